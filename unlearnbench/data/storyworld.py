"""StoryWorld: a procedurally generated world of short children's stories (offline, seeded).

The world (``build_world(world_seed)``) has 12 topics (forest, garden, farm, kitchen, sea, river,
town, school, mountain, castle, space, circus), each with its own places, objects, activities,
adjectives and characters, and 26 named entities per topic (312 in all, e.g. "Pip the fox"), each
with 5 fixed facts: home (a place of its home topic), food, colour (of its scarf), friend (another
entity) and toy. Topics come in adjacent pairs (``ADJACENT_TOPIC``) that share vocabulary and
entities: a garden story often features forest animals, and uses tree/leaf/bird/flower words.

A story is first *planned* (``plan_stories``: a language-neutral ``StoryPlan`` of events with
entity indices and vocabulary keys), then *rendered* in English or Spanish (``render``). Every
noun carries its grammatical gender and plural forms, so Spanish agreement (el/la/los/las,
un/una, adjectives, lo/la) and the contractions al/del are computed, not hard-coded. Whenever a
story states a fact it uses one fixed clause per (fact, language), e.g. "Pip the fox lives in the
cave." / "Pip el zorro vive en la cueva.", and ``fact_probes`` uses the same clause's prefix as
its prompt. Spanish probes end before the article: the options carry it (" la cueva").
Everything is deterministic given the seeds (``random.Random`` instances only).
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from functools import lru_cache

from unlearnbench.data.documents import Document

LANGUAGES = ("en", "es")
FACTS = ("home", "food", "colour", "friend", "toy")
ENTITIES_PER_TOPIC = 26  # the world's original size; `build_world(entities_per_topic=)` sets it

# ----------------------------------------------------------------------------------------------
# Lexicon. Noun spec: "en[/en_plural]=es[/es_plural]:gender". Person roles with two forms:
# "baker=panadero|panadera" (the entity's gender picks the form).


class Noun:
    __slots__ = ("key", "en", "en_pl", "es", "es_pl", "g")

    def __init__(self, key, en, en_pl, es, es_pl, g):
        self.key, self.en, self.en_pl, self.es, self.es_pl, self.g = key, en, en_pl, es, es_pl, g

    def __repr__(self):
        return f"Noun({self.key!r})"


_UNACCENT = str.maketrans("áéíóú", "aeiou")


def _en_plural(w: str) -> str:
    if w.endswith(("s", "x", "ch", "sh")):
        return w + "es"
    if w.endswith("y") and w[-2:-1] not in ("a", "e", "o", "u"):
        return w[:-1] + "ies"
    return w + "s"


def _es_plural_word(w: str) -> str:
    if w[-1] in "aeiouáéó":
        return w + "s"
    if w.endswith("z"):
        return w[:-1] + "ces"
    if w[-1] in "ns" and any(c in w[-3:] for c in "áéíóú"):
        return w.translate(_UNACCENT) + "es"
    return w + "es"


def _es_plural(phrase: str) -> str:
    out, done = [], False
    for w in phrase.split(" "):
        if w == "de":
            done = True
        out.append(w if done else _es_plural_word(w))
    return " ".join(out)


NOUNS: dict[str, Noun] = {}


def _noun(spec: str) -> str:
    en_part, es_part = spec.split("=")
    es_part, g = es_part.rsplit(":", 1) if ":" in es_part else (es_part, None)
    en, en_pl = en_part.split("/") if "/" in en_part else (en_part, None)
    en_pl = en_pl or " ".join(en.split(" ")[:-1] + [_en_plural(en.split(" ")[-1])])
    if "|" in es_part:  # gendered person role
        m, f = es_part.split("|")
        for key, form, gg in ((en, m, "m"), (en + "|f", f, "f")):
            _add(Noun(key, en, en_pl, form, _es_plural(form), gg))
        return en
    es, es_pl = es_part.split("/") if "/" in es_part else (es_part, None)
    _add(Noun(en, en, en_pl, es, es_pl or _es_plural(es), g))
    return en


def _add(n: Noun) -> None:
    old = NOUNS.get(n.key)
    if old is not None and (old.es, old.g) != (n.es, n.g):
        raise ValueError(f"noun {n.key!r} defined twice differently")
    NOUNS[n.key] = n


class Adj:
    __slots__ = ("key", "en", "forms")

    def __init__(self, key, en, ms, fs, mp, fp):
        self.key, self.en = key, en
        self.forms = {("m", False): ms, ("f", False): fs, ("m", True): mp, ("f", True): fp}


ADJS: dict[str, Adj] = {}


def _adj(spec: str) -> str:
    """ "en=es_m[/es_f]"; plural forms derived."""
    en, es = spec.split("=")
    if "/" in es:
        m, f = es.split("/")
    elif es.endswith("o"):
        m, f = es, es[:-1] + "a"
    else:
        m = f = es
    inv = m == "rosa"
    mp = m if inv else _es_plural_word(m)
    fp = f if inv else _es_plural_word(f)
    ADJS[en] = Adj(en, en, m, f, mp, fp)
    return en


@dataclass(frozen=True)
class TopicVocab:
    characters: tuple[str, ...]  # noun keys (roles with two forms have key en, en+"|f")
    kinds: tuple[str, ...]  # parallel: "animal" | "person" | "creature"
    places: tuple[str, ...]
    objects: tuple[str, ...]
    adjectives: tuple[str, ...]
    activities: tuple[tuple[str, str], ...]  # (en infinitive phrase, es infinitive phrase)


def _topic(chars: str, places: str, objects: str, adjs: str, acts: list[tuple[str, str]]):
    keys, kinds = [], []
    for spec in chars.split(";"):
        spec = spec.strip()
        kind = "animal"
        if spec.startswith("@"):
            kind, spec = "person", spec[1:]
        elif spec.startswith("*"):
            kind, spec = "creature", spec[1:]
        keys.append(_noun(spec))
        kinds.append(kind)
    return TopicVocab(
        tuple(keys),
        tuple(kinds),
        tuple(_noun(s.strip()) for s in places.split(";")),
        tuple(_noun(s.strip()) for s in objects.split(";")),
        tuple(_adj(s.strip()) for s in adjs.split(";")),
        tuple(acts),
    )


# Vocabulary shared by each adjacent pair (used by both topics' stories).
SHARED_OBJECTS = {
    ("forest", "garden"): "tree=árbol:m; leaf/leaves=hoja:f; bird=pájaro:m; flower=flor:f; "
    "mushroom=seta:f; acorn=bellota:f; worm=gusano:m; branch=rama:f",
    ("farm", "kitchen"): "egg=huevo:m; basket=cesta:f; jug=jarra:f; apple=manzana:f; bucket=cubo:m",
    ("sea", "river"): "fish/fish=pez/peces:m; boat=barca:f; net=red:f; stone=piedra:f; wave=ola:f",
    ("town", "school"): "bus/buses=autobús:m; bicycle=bicicleta:f; map=mapa:m; letter=carta:f; "
    "book=libro:m",
    ("mountain", "castle"): "rock=roca:f; flag=bandera:f; rope=cuerda:f; cliff=acantilado:m; "
    "torch=antorcha:f",
    ("space", "circus"): "star=estrella:f; balloon=globo:m; light/lights=luz/luces:f; "
    "cannon=cañón:m; drumroll=redoble:m",
}

TOPIC_VOCAB: dict[str, TopicVocab] = {
    "forest": _topic(
        "fox/foxes=zorro:m; owl=búho:m; bear=oso:m; rabbit=conejo:m; deer/deer=ciervo:m; "
        "squirrel=ardilla:f; hedgehog=erizo:m; wolf/wolves=lobo:m; badger=tejón:m; "
        "@woodcutter=leñador|leñadora",
        "cave=cueva:f; den=guarida:f; burrow=madriguera:f; hollow tree=árbol hueco/árboles huecos:m;"
        " clearing=claro:m; log cabin=cabaña de troncos:f",
        "pine cone=piña:f; fern=helecho:m; stick=palo:m; feather=pluma:f; twig=ramita:f; "
        "berry bush/berry bushes=arbusto:m",
        "dark=oscuro; tall=alto; quiet=silencioso; wild=salvaje; old=viejo",
        [
            ("gather acorns", "recoger bellotas"),
            ("climb a tall tree", "trepar a un árbol alto"),
            ("follow the tracks in the mud", "seguir las huellas en el barro"),
            ("build a shelter of sticks", "construir un refugio de palos"),
            ("listen to the owls", "escuchar a los búhos"),
            ("look for mushrooms", "buscar setas"),
        ],
    ),
    "garden": _topic(
        "snail=caracol:m; bee=abeja:f; butterfly/butterflies=mariposa:f; frog=rana:f; "
        "ladybird=mariquita:f; robin=petirrojo:m; mole=topo:m; @gardener=jardinero|jardinera",
        "flower bed=parterre:m; greenhouse=invernadero:m; shed=cobertizo:m; pond=estanque:m; "
        "vegetable patch/vegetable patches=huerto:m; hedge=seto:m",
        "watering can=regadera:f; tulip=tulipán:m; spade=pala:f; pumpkin=calabaza:f; "
        "wheelbarrow=carretilla:f; rake=rastrillo:m",
        "sunny=soleado; fresh=fresco; tidy=ordenado; green=verde; small=pequeño",
        [
            ("water the flowers", "regar las flores"),
            ("plant some seeds", "plantar unas semillas"),
            ("pull up the weeds", "arrancar las malas hierbas"),
            ("pick ripe tomatoes", "recoger tomates maduros"),
            ("watch the butterflies", "mirar las mariposas"),
            ("climb the old apple tree", "trepar al viejo manzano"),
        ],
    ),
    "farm": _topic(
        "cow=vaca:f; pig=cerdo:m; hen=gallina:f; goat=cabra:f; sheep/sheep=oveja:f; "
        "horse=caballo:m; duck=pato:m; donkey=burro:m; @farmer=granjero|granjera",
        "barn=granero:m; stable=establo:m; field=campo:m; henhouse=gallinero:m; "
        "pigsty/pigsties=pocilga:f; meadow=prado:m",
        "fence=valla:f; tractor=tractor:m; haystack=almiar:m; gate=portón:m; "
        "milk churn=lechera:f; saddle=silla de montar:f",
        "muddy=embarrado; noisy=ruidoso; wide=amplio; warm=cálido; busy=ajetreado",
        [
            ("feed the hens", "dar de comer a las gallinas"),
            ("collect the eggs", "recoger los huevos"),
            ("milk the cows", "ordeñar las vacas"),
            ("ride the tractor", "montar en el tractor"),
            ("carry hay to the barn", "llevar heno al granero"),
        ],
    ),
    "kitchen": _topic(
        "@cook=cocinero|cocinera; @baker=panadero|panadera; cat=gato:m; puppy/puppies=cachorro:m;"
        " cricket=grillo:m; ant=hormiga:f; parrot=loro:m",
        "pantry/pantries=despensa:f; cupboard=armario:m; kitchen=cocina:f; bakery/bakeries="
        "panadería:f; cellar=sótano:m; tea shop=tetería:f",
        "pot=olla:f; spoon=cuchara:f; frying pan=sartén/sartenes:f; bowl=cuenco:m; jar=tarro:m; "
        "apron=delantal:m; recipe=receta:f",
        "hot=caliente; sweet=dulce; delicious=delicioso; clean=limpio; warm=cálido",
        [
            ("bake a cake", "hacer un pastel"),
            ("stir the soup", "remover la sopa"),
            ("wash the dishes", "lavar los platos"),
            ("set the table", "poner la mesa"),
            ("make pancakes", "hacer tortitas"),
        ],
    ),
    "sea": _topic(
        "whale=ballena:f; dolphin=delfín:m; crab=cangrejo:m; seal=foca:f; "
        "octopus/octopuses=pulpo:m; turtle=tortuga:f; seagull=gaviota:f; @sailor=marinero|marinera",
        "beach/beaches=playa:f; island=isla:f; harbour=puerto:m; lighthouse=faro:m; "
        "reef=arrecife:m; cove=cala:f",
        "shell=concha:f; starfish/starfish=estrella de mar:f; sandcastle=castillo de arena:m; "
        "pearl=perla:f; bottle=botella:f; jellyfish/jellyfish=medusa:f; bucket=cubo:m",
        "salty=salado; deep=profundo; windy=ventoso; sandy=arenoso; blue=azul",
        [
            ("swim in the waves", "nadar entre las olas"),
            ("build a sandcastle", "construir un castillo de arena"),
            ("look for shells", "buscar conchas"),
            ("sail a little boat", "navegar en una barca"),
            ("watch the whales", "mirar las ballenas"),
        ],
    ),
    "river": _topic(
        "otter=nutria:f; beaver=castor:m; toad=sapo:m; heron=garza:f; swan=cisne:m; "
        "salmon/salmon=salmón:m; kingfisher=martín pescador:m; @fisherman/fishermen=pescador|pescadora",
        "riverbank=orilla:f; bridge=puente:m; waterfall=cascada:f; mill=molino:m; dam=presa:f; "
        "lake=lago:m",
        "reed=junco:m; raft=balsa:f; fishing rod=caña de pescar:f; log=tronco:m; "
        "canoe=canoa:f; pebble=guijarro:m",
        "cold=frío; fast=rápido; wet=mojado; calm=tranquilo; muddy=embarrado",
        [
            ("catch fish with a net", "pescar con una red"),
            ("skip stones", "hacer saltar piedras"),
            ("build a raft", "construir una balsa"),
            ("paddle a canoe", "remar en una canoa"),
            ("cross the bridge", "cruzar el puente"),
        ],
    ),
    "town": _topic(
        "@mail carrier=cartero|cartera; @police officer=policía|policía; @doctor=médico|médica; "
        "@shopkeeper=tendero|tendera; pigeon=paloma:f; rat=rata:f; dog=perro:m",
        "market=mercado:m; library/libraries=biblioteca:f; station=estación:f; square=plaza:f; "
        "shop=tienda:f; apartment=apartamento:m",
        "lamp post=farola:f; umbrella=paraguas/paraguas:m; bench/benches=banco:m; "
        "ticket=billete:m; newspaper=periódico:m; clock=reloj:m",
        "busy=ajetreado; noisy=ruidoso; new=nuevo; bright=luminoso; small=pequeño",
        [
            ("ride the bus", "subir al autobús"),
            ("post a letter", "enviar una carta"),
            ("visit the library", "visitar la biblioteca"),
            ("cross the busy street", "cruzar la calle"),
            ("buy a newspaper", "comprar un periódico"),
        ],
    ),
    "school": _topic(
        "@teacher=maestro|maestra; @pupil=alumno|alumna; @janitor=conserje|conserje; "
        "@headteacher=director|directora; hamster=hámster/hámsteres:m; "
        "goldfish/goldfish=pez dorado/peces dorados:m; tortoise=galápago:m",
        "classroom=clase:f; playground=patio:m; gym=gimnasio:m; music room=sala de música:f; "
        "dining hall=comedor:m; art room=taller de arte:m",
        "pencil=lápiz:m; blackboard=pizarra:f; ruler=regla:f; backpack=mochila:f; desk=pupitre:m; "
        "notebook=cuaderno:m",
        "clever=listo; quiet=silencioso; new=nuevo; tidy=ordenado; bright=luminoso",
        [
            ("read a story", "leer un cuento"),
            ("paint a picture", "pintar un cuadro"),
            ("sing a song", "cantar una canción"),
            ("count to one hundred", "contar hasta cien"),
            ("write a letter", "escribir una carta"),
        ],
    ),
    "mountain": _topic(
        "mountain goat=cabra montés/cabras monteses:f; hawk=halcón:m; marmot=marmota:f; "
        "yak=yak/yaks:m; snow leopard=leopardo de las nieves:m; @climber=escalador|escaladora; "
        "@shepherd=pastor|pastora",
        "peak=cumbre:f; hut=refugio:m; valley=valle:m; ledge=cornisa:f; glacier=glaciar:m; "
        "slope=ladera:f",
        "snowball=bola de nieve:f; boot=bota:f; pickaxe=piolet/piolets:m; crystal=cristal:m; "
        "pine tree=pino:m; sled=trineo:m",
        "high=elevado; steep=empinado; snowy=nevado; cold=frío; windy=ventoso",
        [
            ("climb to the top", "subir hasta la cima"),
            ("throw snowballs", "lanzar bolas de nieve"),
            ("ski down the slope", "bajar esquiando por la ladera"),
            ("look at the clouds", "mirar las nubes"),
            ("build a snowman", "hacer un muñeco de nieve"),
        ],
    ),
    "castle": _topic(
        "dragon=dragón:m; @knight=caballero:m; @princess/princesses=princesa:f; @king=rey:m; "
        "@queen=reina:f; *ghost=fantasma:m; bat=murciélago:m; @wizard=mago|maga",
        "tower=torre:f; dungeon=mazmorra:f; moat=foso:m; throne room=salón del trono/salones del "
        "trono:m; great hall=gran salón/grandes salones:m; drawbridge=puente levadizo/puentes "
        "levadizos:m",
        "crown=corona:f; sword=espada:f; shield=escudo:m; key=llave:f; treasure chest/treasure "
        "chests=cofre:m; candle=vela:f",
        "ancient=antiguo; royal=real; dark=oscuro; grand=magnífico; gloomy=sombrío",
        [
            ("guard the gate", "vigilar la puerta"),
            ("polish the crown", "pulir la corona"),
            ("practise with a wooden sword", "practicar con una espada de madera"),
            ("climb the winding stairs", "subir la escalera de caracol"),
            ("hold a feast", "celebrar un banquete"),
        ],
    ),
    "space": _topic(
        "*robot=robot:m; *alien=extraterrestre|extraterrestre; @astronaut=astronauta|astronauta; "
        "@pilot=piloto|piloto; space dog=perro espacial:m; star whale=ballena estelar:f; "
        "moon mouse/moon mice=ratón lunar/ratones lunares:m",
        "rocket=cohete:m; space station=estación espacial:f; moon=luna:f; crater=cráter/cráteres:m;"
        " planet=planeta:m; moon base=base lunar:f",
        "helmet=casco:m; telescope=telescopio:m; satellite=satélite:m; radio=radio:f; "
        "moon rock=roca lunar:f; button=botón:m",
        "shiny=brillante; silver=plateado; distant=lejano; dark=oscuro; quiet=silencioso",
        [
            ("fly the rocket", "pilotar el cohete"),
            ("count the stars", "contar las estrellas"),
            ("float in the air", "flotar en el aire"),
            ("fix the radio", "arreglar la radio"),
            ("visit a new planet", "visitar un planeta nuevo"),
        ],
    ),
    "circus": _topic(
        "@clown=payaso|payasa; @acrobat=acróbata|acróbata; @juggler=malabarista|malabarista; "
        "lion=león:m; elephant=elefante:m; monkey=mono:m; tiger=tigre:m; poodle=caniche:m",
        "big top=carpa:f; ring=pista:f; caravan=caravana:f; wagon=carromato:m; "
        "ticket booth=taquilla:f; dressing room=camerino:m",
        "hoop=aro:m; trumpet=trompeta:f; top hat=sombrero de copa:m; ladder=escalera:f; "
        "costume=disfraz:m; tightrope=cuerda floja/cuerdas flojas:f",
        "funny=gracioso; loud=ruidoso; amazing=asombroso; bright=luminoso; tiny=diminuto",
        [
            ("juggle five balls", "hacer malabares con cinco pelotas"),
            ("walk on the tightrope", "caminar por la cuerda floja"),
            ("jump through a hoop", "saltar a través de un aro"),
            ("ride a tiny bicycle", "montar en una bicicleta diminuta"),
            ("make the children laugh", "hacer reír a los niños"),
        ],
    ),
}

TOPICS: tuple[str, ...] = tuple(TOPIC_VOCAB)

ADJACENT_TOPIC: dict[str, str] = {}
SHARED: dict[str, tuple[str, ...]] = {}
for (_a, _b), _spec in SHARED_OBJECTS.items():
    ADJACENT_TOPIC[_a], ADJACENT_TOPIC[_b] = _b, _a
    SHARED[_a] = SHARED[_b] = tuple(_noun(s.strip()) for s in _spec.split(";"))

DEFAULT_FORGET_TOPIC = "forest"
DEFAULT_ADJACENT_TOPIC = ADJACENT_TOPIC[DEFAULT_FORGET_TOPIC]  # "garden"

# Fact value lists (language-neutral keys).
COLOURS = tuple(
    _adj(s)
    for s in (
        "red=rojo",
        "blue=azul",
        "green=verde",
        "yellow=amarillo",
        "purple=morado",
        "pink=rosa",
        "brown=marrón",
        "white=blanco",
        "black=negro",
        "grey=gris",
    )
)
FOODS: dict[str, str] = {
    "berries": "moras",
    "apples": "manzanas",
    "bread": "pan",
    "sardines": "sardinas",
    "honey": "miel",
    "nuts": "nueces",
    "carrots": "zanahorias",
    "cheese": "queso",
    "soup": "sopa",
    "cake": "pastel",
    "corn": "maíz",
    "grapes": "uvas",
    "pears": "peras",
    "rice": "arroz",
    "cookies": "galletas",
    "pancakes": "tortitas",
}
TOYS = tuple(
    _noun(s)
    for s in (
        "kite=cometa:f",
        "ball=pelota:f",
        "drum=tambor:m",
        "doll=muñeca:f",
        "whistle=silbato:m",
        "spinning top=peonza:f",
        "toy boat=barquito:m",
        "teddy bear=osito de peluche:m",
        "marble=canica:f",
        "puppet=marioneta:f",
    )
)
SCARF = _noun("scarf/scarves=bufanda:f")
TIMES = tuple(_noun(s) for s in ("morning=mañana:f", "afternoon=tarde:f", "day=día:m"))
TIME_ADJS = tuple(_adj(s) for s in ("sunny=soleado", "cold=frío", "rainy=lluvioso", "warm=cálido"))
FEELINGS = tuple(
    _adj(s)
    for s in (
        "happy=feliz",
        "proud=orgulloso",
        "tired=cansado",
        "brave=valiente",
        "surprised=sorprendido",
        "excited=emocionado",
        "curious=curioso",
        "sleepy=somnoliento",
    )
)
_adj("glad=contento")

FACT_VALUES: dict[str, tuple[str, ...]] = {
    "food": tuple(FOODS),
    "colour": COLOURS,
    "toy": TOYS,
}

# ----------------------------------------------------------------------------------------------
# World


@dataclass(frozen=True)
class Entity:
    name: str  # display name in English, e.g. "Pip the fox"
    kind: str  # "animal" | "person" | "creature"
    home_topic: str
    facts: dict[str, str] = field(hash=False)  # fact -> value key
    first_name: str = ""
    species: str = ""  # noun key in NOUNS
    gender: str = "m"  # grammatical gender in Spanish

    def es_name(self) -> str:
        n = NOUNS[self.species]
        return f"{self.first_name} {'el' if n.g == 'm' else 'la'} {n.es}"


@dataclass(frozen=True)
class World:
    seed: int
    topics: tuple[str, ...]
    entities: tuple[Entity, ...]
    _index: dict = field(default_factory=dict, init=False, repr=False, compare=False, hash=False)

    def __post_init__(self):
        self._index.update({e.name: e for e in self.entities})
        by_topic: dict[str, list[Entity]] = {t: [] for t in self.topics}
        for e in self.entities:
            by_topic[e.home_topic].append(e)
        self._index["__by_topic__"] = {t: tuple(v) for t, v in by_topic.items()}

    def entity(self, name: str) -> Entity:
        return self._index[name]

    def entities_of(self, topic: str) -> tuple[Entity, ...]:
        return self._index["__by_topic__"][topic]

    def fact_options(self, entity: Entity, fact: str) -> tuple[str, ...]:
        """All possible values of `fact` for `entity` (the correct one included)."""
        if fact == "home":
            return TOPIC_VOCAB[entity.home_topic].places
        if fact == "friend":
            pool = self.entities_of(entity.home_topic) + self.entities_of(
                ADJACENT_TOPIC[entity.home_topic]
            )
            return tuple(e.name for e in pool if e.name != entity.name)
        return FACT_VALUES[fact]


def _name_pool() -> list[str]:
    onsets = ["b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "br", "tr"]
    vowels = ["a", "e", "i", "o", "u"]
    codas = ["p", "n", "m", "x", "b", "t", "l"]
    names = set()
    for o1 in onsets:
        for v1 in vowels:
            for c in codas:
                names.add(o1 + v1 + c)
            for o2 in onsets[:14]:
                for v2 in vowels:
                    names.add(o1 + v1 + o2 + v2)
    banned = {w.lower() for n in NOUNS.values() for w in (n.en + " " + n.es).split()}
    banned |= {w for a in ADJS.values() for f in a.forms.values() for w in f.split()}
    banned |= set(FOODS.values()) | set(FOODS) | {
        "mama", "papa", "nada", "todo", "toma", "como", "pero", "para", "mono", "malo", "bola",
        "vino", "dime", "bebe", "pone", "sale", "tiene", "pasa", "lima", "mira", "rima", "tomate",
        "vale", "sube", "baja", "dice", "bote", "nube", "pala", "remo", "tuba", "mula", "foto",
        "sol", "mar", "son", "sin", "con", "mil", "tan", "ten", "van", "ven", "pan", "pen", "pin",
        "pit", "pot", "bat", "bet", "bit", "but", "bun", "den", "dim", "fan", "fin", "fun", "gun",
        "gum", "kin", "lit", "lot", "man", "men", "met", "mom", "nun", "nut", "pat", "pet", "pub",
        "rat", "rib", "rim", "rot", "rub", "sat", "set", "sit", "sun", "tab", "tin", "tip", "top",
        "tub", "vet", "zip", "box", "fox", "fix", "mix", "six", "tax", "sex", "pox", "lab", "mob",
        "sob", "rob", "job", "gel", "nil", "pal", "sal", "tel", "gal", "bin", "bib", "kit", "nap",
    }  # fmt: skip
    for lang in TEMPLATES.values():
        for ts in lang.values():
            for t in ts:
                banned |= {w.strip(".,!¡{}").lower() for w in t.split()}
    for v in TOPIC_VOCAB.values():
        for en, es in v.activities:
            banned |= set((en + " " + es).lower().split())
    return sorted(n.capitalize() for n in names if n not in banned)


def _new_entity(rng: random.Random, topic: str, order: list[int], j: int, first: str) -> dict:
    """The `j`-th entity of `topic` (characters in `order`), named `first`, with its facts but no
    friend yet (drawn once every entity exists)."""
    v = TOPIC_VOCAB[topic]
    ci = order[j % len(order)]
    species, kind = v.characters[ci], v.kinds[ci]
    if species + "|f" in NOUNS and rng.random() < 0.5:
        species += "|f"
    return dict(
        name=f"{first} the {NOUNS[species].en}",
        kind=kind,
        home_topic=topic,
        first_name=first,
        species=species,
        gender=NOUNS[species].g,
        facts={
            "home": rng.choice(v.places),
            "food": rng.choice(FACT_VALUES["food"]),
            "colour": rng.choice(COLOURS),
            "friend": "",
            "toy": rng.choice(TOYS),
        },
    )


def _draw_friends(rng: random.Random, entities: list[dict], by_topic: dict[str, list[dict]]):
    """Each entity's friend: another entity of its home topic, or (a quarter of the time) of the
    adjacent topic."""
    for e in entities:
        src = e["home_topic"] if rng.random() < 0.75 else ADJACENT_TOPIC[e["home_topic"]]
        while True:
            f = rng.choice(by_topic[src])
            if f is not e:
                break
        e["facts"]["friend"] = f["name"]


@lru_cache(maxsize=8)
def build_world(
    seed: int = 0,
    entities_per_topic: int = ENTITIES_PER_TOPIC,
    topic_sizes: tuple[tuple[str, int], ...] = (),
    added: tuple[tuple[str, int], ...] = (),
) -> World:
    """The fixed world of entities and facts for `seed` (cached; treat as immutable). Fewer entities
    per topic means each fact is stated more often in the same number of stories. `topic_sizes`
    ((topic, entities), ...) gives some topics another number of entities; stories are then drawn
    in proportion to each topic's entities (`_plan_topic`), so every entity is stated as often.
    `added` ((topic, entities), ...) adds entities to topics after the world's own, drawn from a
    random stream of their own: the world's own entities and facts stay exactly those of the world
    without them (a larger world around the same forget topic)."""
    sizes = {t: entities_per_topic for t in TOPICS}
    for topic, n in topic_sizes:
        if topic not in sizes:
            raise ValueError(f"unknown topic {topic!r}; topics: {', '.join(TOPICS)}")
        sizes[topic] = int(n)
    more = {t: 0 for t in TOPICS}
    for topic, n in added:
        if topic not in more or int(n) < 0:
            raise ValueError(f"added entities: unknown topic {topic!r} or negative count {n}")
        more[topic] += int(n)
    for topic, n in sizes.items():
        if not 3 <= n <= 100 or n + more[topic] > 100:  # a friend probe needs 3 distractors
            raise ValueError(
                f"entities per topic must be in [3, 100], got {n + more[topic]} for {topic}"
            )
    # the world's own entities: one random stream, in topic order
    rng = random.Random(seed)
    names = _name_pool()
    rng.shuffle(names)
    entities: list[dict] = []
    orders: dict[str, list[int]] = {}
    for topic in TOPICS:
        orders[topic] = list(range(len(TOPIC_VOCAB[topic].characters)))
        rng.shuffle(orders[topic])
        for j in range(sizes[topic]):
            entities.append(_new_entity(rng, topic, orders[topic], j, names[len(entities)]))
    by_topic: dict[str, list[dict]] = {t: [] for t in TOPICS}
    for e in entities:
        by_topic[e["home_topic"]].append(e)
    _draw_friends(rng, entities, by_topic)
    # the added entities: their own stream, the next unused names, the topic's characters in
    # the same order; friends among all entities (an own entity never befriends an added one)
    rng = random.Random(_mix(seed, 5))
    extra: list[dict] = []
    for topic in TOPICS:
        for j in range(sizes[topic], sizes[topic] + more[topic]):
            first = names[len(entities) + len(extra)]
            extra.append(_new_entity(rng, topic, orders[topic], j, first))
            by_topic[topic].append(extra[-1])
    _draw_friends(rng, extra, by_topic)
    return World(seed, TOPICS, tuple(Entity(**e) for e in entities + extra))


# ----------------------------------------------------------------------------------------------
# Plans


@dataclass(frozen=True)
class StoryOptions:
    """How stories are planned: how many facts they state and how often characters visit from
    other topics. The defaults are the original generator's."""

    main_facts: tuple[int, int] = (2, 4)  # facts stated about the main character (min, max)
    other_facts: tuple[int, int] = (1, 3)  # about the second character; the third's min is 0
    main_from_adjacent: float = 0.25  # the main character lives in the adjacent topic
    adjacent_visitors: float = 0.35  # a supporting character comes from the adjacent topic
    other_visitors: float = 0.10  # ... from any topic
    # chance that a fact sentence about a character whose home is another topic is kept; below 1,
    # a topic's facts are stated mostly in its own stories (so filtering them removes the facts)
    # while its characters still visit others (so topics still share entities)
    visitor_facts: float = 1.0
    # share of documents that are an entity's profile instead of a story: all its facts, one
    # sentence each, in a random order (an encyclopedia entry; the entity lives in the document's
    # topic). Facts need many statements to form in a small model; profiles state them densely.
    profiles: float = 0.0
    # ((from_topic, to_topic, chance), ...): a profile of an entity of from_topic is a document of
    # to_topic with this chance. One topic's knowledge stated in another's documents: filtering
    # to_topic then removes part of from_topic's facts (an adjacent topic entangled with the forget
    # topic). The entity keeps its home topic, so its probes stay in from_topic's split.
    moved_profiles: tuple[tuple[str, str, float], ...] = ()

    def __post_init__(self):
        for name in ("main_facts", "other_facts"):
            lo, hi = getattr(self, name)
            if not 0 <= lo <= hi <= len(FACTS):
                raise ValueError(f"{name} must satisfy 0 <= min <= max <= {len(FACTS)}")
        for name in (
            "main_from_adjacent",
            "adjacent_visitors",
            "other_visitors",
            "visitor_facts",
            "profiles",
        ):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if self.adjacent_visitors + self.other_visitors > 1.0:
            raise ValueError("adjacent_visitors + other_visitors must be at most 1")
        for src, dst, chance in self.moved_profiles:
            if src not in TOPICS or dst not in TOPICS or src == dst:
                raise ValueError(f"moved_profiles: ({src!r}, {dst!r}) must be two distinct topics")
            if not 0.0 <= chance <= 1.0:
                raise ValueError(f"moved_profiles chance must be in [0, 1], got {chance}")


DEFAULT_STORIES = StoryOptions()

# The built-in benchmarks' world. Ours, chosen by scripts/calibrate_storyworld.py
# (docs/storyworld-calibration.md): in the original world (26 entities per topic, stories only) a
# 3-minute `tiny` run answers fact probes at chance; with 4 entities per topic and a corpus of
# profiles, no-filter answers most of them and the perfect filter stays at chance on forget facts.
# The denser story settings apply to the stories a run asks for with `profiles` below 1.
CALIBRATED_ENTITIES_PER_TOPIC = 4
CALIBRATED_STORIES = StoryOptions(main_facts=(3, 5), other_facts=(2, 4), profiles=1.0)


@dataclass(frozen=True)
class StoryPlan:
    """Language-neutral story. Events are tuples ``(type, variant, *args)`` where entity args are
    indices into `entities` and vocabulary args are keys of NOUNS / ADJS / activities."""

    id: int
    topic: str
    entities: tuple[str, ...]
    events: tuple[tuple, ...]
    facts: tuple[tuple[str, str], ...]  # (entity name, fact) pairs stated by a fact sentence
    overrides: tuple[tuple[str, str, str], ...] = ()  # (entity, fact, value) replacing the world's


def _mix(*xs: int) -> int:
    h = 0
    for x in xs:
        h = (h * 0x9E3779B97F4A7C15 + (x & 0xFFFFFFFFFFFF) + 0x632BE5AB) % (1 << 61)
    return h


def _plan_topic(world: World, seed: int, i: int) -> tuple[random.Random, str]:
    """Plan `i`'s random stream and topic: uniform over topics when they have equal numbers of
    entities (the original stream), else in proportion to their entities."""
    r = random.Random(_mix(world.seed, seed, i, 1))
    sizes = [len(world.entities_of(t)) for t in TOPICS]
    if len(set(sizes)) == 1:
        return r, TOPICS[r.randrange(len(TOPICS))]
    u, acc = r.random() * sum(sizes), 0
    for topic, n in zip(TOPICS, sizes, strict=True):
        acc += n
        if u < acc:
            return r, topic
    return r, TOPICS[-1]


def _pick_entity(
    r: random.Random, world: World, topic: str, exclude: list[str], opts: StoryOptions
) -> Entity:
    u = r.random()
    if u < 1.0 - opts.adjacent_visitors - opts.other_visitors:
        src = topic
    elif u < 1.0 - opts.other_visitors:
        src = ADJACENT_TOPIC[topic]
    else:
        src = TOPICS[r.randrange(len(TOPICS))]
    pool = world.entities_of(src)
    while True:
        e = pool[r.randrange(len(pool))]
        if e.name not in exclude:
            return e


def _make_plan(
    world: World, r: random.Random, topic: str, pid: int, opts: StoryOptions = DEFAULT_STORIES
) -> StoryPlan:
    adj_topic = ADJACENT_TOPIC[topic]
    v, va = TOPIC_VOCAB[topic], TOPIC_VOCAB[adj_topic]
    rv = r.randrange

    def pick(own, other, shared, p_other=0.25, p_shared=0.25):
        u = r.random()
        seq = shared if u < p_shared else other if u < p_shared + p_other else own
        return seq[rv(len(seq))]

    def place():
        return pick(v.places, va.places, v.places, 0.2, 0.0)

    def obj():
        return pick(v.objects, va.objects, SHARED[topic])

    def adjective():
        return pick(v.adjectives, va.adjectives, v.adjectives, 0.2, 0.0)

    def activity():
        return pick(
            [f"{topic}:{i}" for i in range(len(v.activities))],
            [f"{adj_topic}:{i}" for i in range(len(va.activities))],
            (),
            0.2,
            0.0,
        )

    if opts.profiles and r.random() < opts.profiles:
        plan = _profile_plan(world, r, topic, pid)
        for src, dst, chance in opts.moved_profiles:
            if src == topic and r.random() < chance:
                return replace(plan, topic=dst)
        return plan
    main = world.entities_of(adj_topic if r.random() < opts.main_from_adjacent else topic)
    main = main[rv(len(main))]
    names = [main.name]
    if r.random() < 0.3:  # the main character's friend joins the story
        names.append(main.facts["friend"])
    else:
        names.append(_pick_entity(r, world, topic, names, opts).name)
    if r.random() < 0.3:
        names.append(_pick_entity(r, world, topic, names, opts).name)

    facts: list[tuple[str, str]] = []
    ev: list[tuple] = []

    def state_facts(ei: int, lo: int, hi: int):
        fs = list(FACTS)
        r.shuffle(fs)
        visitor = world.entity(names[ei]).home_topic != topic
        for f in fs[: lo + rv(hi - lo + 1)]:
            if visitor and r.random() >= opts.visitor_facts:
                continue
            facts.append((names[ei], f))
            ev.append(("fact", rv(1 << 16), ei, f))

    V = lambda: rv(1 << 16)  # noqa: E731
    ev.append(("intro", V(), 0, place(), TIMES[rv(len(TIMES))], TIME_ADJS[rv(4)]))
    state_facts(0, *opts.main_facts)
    if r.random() < 0.5:
        ev.append(("describe", V(), place(), adjective(), obj()))
    # body: the other characters are met before they act
    body: list[list[tuple]] = []
    for ei in range(1, len(names)):
        body.append([("meet", V(), 0, ei, place())])
    arcs = []
    o = obj()
    arcs.append([("lose", V(), 0, o), ("help", V(), 1, 0, o, place())])
    arcs.append(
        [("go", V(), 0, place(), adjective()), ("find", V(), 0, obj(), adjective(), place())]
    )
    arcs.append([("see", V(), rv(len(names)), obj(), adjective())])
    arcs.append([("activity", V(), (0, 1), activity())])
    arcs.append([("activity", V(), (rv(len(names)),), activity())])
    arcs.append([("eat", V(), rv(len(names)))])
    arcs.append([("weather", V())])
    arcs.append([("feel", V(), rv(len(names)), FEELINGS[rv(len(FEELINGS))])])
    r.shuffle(arcs)
    chosen = arcs[: (3 if len(names) < 3 else 2) + rv(3)]
    # insert meets first, then facts about the newcomer, then the arcs
    for ei in range(1, len(names)):
        ev.extend(body[ei - 1])
        lo, hi = opts.other_facts
        state_facts(ei, 0 if ei > 1 else lo, hi)
    for a in chosen:
        ev.extend(a)
    if r.random() < 0.5:
        ev.append(("feel", V(), 0, FEELINGS[rv(len(FEELINGS))]))
    ev.append(("home", V(), 0) if r.random() < 0.6 else ("end", V(), 0, 1))
    return StoryPlan(pid, topic, tuple(names), tuple(ev), tuple(facts))


def _profile_plan(world: World, r: random.Random, topic: str, pid: int) -> StoryPlan:
    """A profile of one entity of `topic`: each of its facts in one sentence, in a random order."""
    pool = world.entities_of(topic)
    entity = pool[r.randrange(len(pool))]
    fs = list(FACTS)
    r.shuffle(fs)
    events = tuple(("fact", r.randrange(1 << 16), 0, f) for f in fs)
    return StoryPlan(pid, topic, (entity.name,), events, tuple((entity.name, f) for f in fs))


def iter_plans(
    world: World,
    seed: int,
    topics: Iterable[str] | None = None,
    start: int = 0,
    stories: StoryOptions = DEFAULT_STORIES,
) -> Iterator[StoryPlan]:
    """Infinite stream of plans. Plan `i` depends only on (world.seed, seed, i), so restricting
    `topics` yields a subsequence of the unrestricted stream (ids stay stable)."""
    allowed = None if topics is None else frozenset(topics)
    if allowed is not None and not allowed <= set(TOPICS):
        raise ValueError(f"unknown topics: {sorted(allowed - set(TOPICS))}")
    # a moved profile's document topic is known only once it is planned
    movers = {src for src, _, _ in stories.moved_profiles}
    i = start
    while True:
        r, topic = _plan_topic(world, seed, i)
        if allowed is None:
            yield _make_plan(world, r, topic, i, stories)
        elif topic in allowed or topic in movers:
            plan = _make_plan(world, r, topic, i, stories)
            if plan.topic in allowed:
                yield plan
        i += 1


def plan_stories(
    world: World,
    n: int,
    seed: int,
    topics: Iterable[str] | None = None,
    stories: StoryOptions = DEFAULT_STORIES,
) -> list[StoryPlan]:
    it = iter_plans(world, seed, topics, stories=stories)
    return [next(it) for _ in range(n)]


# ----------------------------------------------------------------------------------------------
# Rendering

_ES_DEF = {("m", False): "el", ("f", False): "la", ("m", True): "los", ("f", True): "las"}
_ES_IND = {("m", False): "un", ("f", False): "una", ("m", True): "unos", ("f", True): "unas"}


def _an(word: str) -> str:
    return ("an " if word[0] in "aeiou" else "a ") + word


def _es_np(n: Noun, art: dict | None, adj: str | None = None, pl: bool = False) -> str:
    s = n.es_pl if pl else n.es
    if adj is not None:
        s = f"{s} {ADJS[adj].forms[n.g, pl]}"
    return f"{art[n.g, pl]} {s}" if art else s


def _en_np(n: Noun, art: str | None, adj: str | None = None, pl: bool = False) -> str:
    s = n.en_pl if pl else n.en
    if adj is not None:
        s = f"{ADJS[adj].en} {s}"
    if art == "the":
        return "the " + s
    if art == "a":
        return _an(s)
    return s


def _es_prep(prep: str, np: str) -> str:
    if np.startswith("el ") and prep in ("a", "de"):
        return prep + "l " + np[3:]
    return f"{prep} {np}"


def _cap(s: str) -> str:
    if s[0] in "¡¿":
        return s[0] + s[1].upper() + s[2:]
    return s[0].upper() + s[1:]


def fact_clause(world: World, ent: Entity, fact: str, value: str, language: str):
    """(prompt, option, suffix): the sentence stating the fact is prompt + option + suffix + "."."""
    if language == "en":
        x = ent.name
        if fact == "home":
            return f"{x} lives in the", " " + NOUNS[value].en, ""
        if fact == "food":
            return f"{x} likes to eat", " " + value, ""
        if fact == "colour":
            return f"{x} wears a", " " + ADJS[value].en, " scarf"
        if fact == "friend":
            return f"{x} plays every day with", " " + value, ""
        if fact == "toy":
            return f"{x} always carries", " " + _an(NOUNS[value].en), ""
    elif language == "es":
        x = ent.es_name()
        if fact == "home":
            return f"{x} vive en", " " + _es_np(NOUNS[value], _ES_DEF), ""
        if fact == "food":
            return f"{x} prefiere comer", " " + FOODS[value], ""
        if fact == "colour":
            return f"{x} lleva una bufanda", " " + ADJS[value].forms["f", False], ""
        if fact == "friend":
            return f"{x} juega todos los días con", " " + world.entity(value).es_name(), ""
        if fact == "toy":
            return f"{x} siempre lleva", " " + _es_np(NOUNS[value], _ES_IND), ""
    raise ValueError(f"unknown fact/language {fact!r}/{language!r}")


_FACT_PREFIX = {
    "en": ("", "", "Everyone knows that ", "It is well known that ", "As you may know, "),
    "es": ("", "", "Todo el mundo sabe que ", "Es bien sabido que ", "Como ya sabes, "),
}

# Templates: fields are filled per language by _fields(); "{a}" = reference to the subject.
TEMPLATES: dict[str, dict[str, tuple[str, ...]]] = {
    "en": {
        "intro": (
            "One {T_adj} {T}, {A} went to {P_def}.",
            "This is a story about {A}, who loved {P_def}.",
            "Once upon a time, there was {A} who often played near {P_def}.",
            "It was {T_ind} when {A} woke up and walked to {P_def}.",
        ),
        "describe": (
            "{P_def} was {J} and full of {O_pl}.",
            "Around {P_def}, everything was {J}, and there were {O_pl} everywhere.",
            "{P_def} looked {J} that day.",
        ),
        "go": (
            "{a} walked to {P_def_J}.",
            "Then {a} went over to {P_def}.",
            "After a while, {a} ran all the way to {P_def}.",
            "{a} decided to visit {P_def_J}.",
        ),
        "find": (
            "Near {P_def}, {a} found {O_ind_J}.",
            "{a} looked around and saw {O_ind_J} on the ground.",
            "Suddenly, {a} spotted {O_ind_J} behind {P_def}.",
        ),
        "see": (
            "{a} saw some {J} {O_pl} and smiled.",
            "There were many {O_pl} around, and {a} counted them one by one.",
            "{a} watched the {O_pl} for a long time.",
        ),
        "meet": (
            "There, {a} met {b}.",
            "On the way, {a} bumped into {b}.",
            "{b} was waiting near {P_def}.",
            "{a} heard a voice. It was {b}!",
        ),
        "activity1": (
            "{a} wanted to {act}.",
            "{a} spent the whole morning trying to {act}.",
            "It was time to {act}, so {a} got started.",
        ),
        "activity2": (
            "{a} and {b} decided to {act} together.",
            "Together, {a} and {b} tried to {act}.",
            "{a} invited {b} to {act}.",
        ),
        "weather": (
            "The sky turned grey and it began to rain.",
            "The sun was shining brightly.",
            "A cold wind started to blow.",
            "Soon, big white clouds covered the sky.",
        ),
        "lose": (
            "Oh no! {a_cap} had lost {O_def}.",
            "But then {a} noticed that {O_def} was gone.",
            "{a} looked everywhere, but {O_def} had disappeared.",
        ),
        "help": (
            "{a} helped {b} look for {O_def}, and soon they found it.",
            "Luckily, {a} knew where {O_def} was.",
            "{a} found {O_def} behind {P_def}.",
        ),
        "eat": (
            "Then {a} ate some {food}.",
            "{a} was hungry and had some {food} for lunch.",
            "For lunch, {a} shared some {food} with everyone.",
        ),
        "feel": (
            "{a} felt very {F}.",
            "{a} was so {F}!",
            "By now, {a} was feeling {F}.",
        ),
        "home": (
            "When the sun went down, {a} went back to {H_def}.",
            "At the end of the day, {a} returned to {H_def}, tired but happy.",
            "That night, {a} slept soundly in {H_def}.",
        ),
        "end": (
            "It had been a wonderful day.",
            "{a} smiled. It had been a good day.",
            "From that day on, {a} and {b} were the best of friends.",
        ),
    },
    "es": {
        "intro": (
            "{T_ind_adj}, {A} fue {al_P}.",
            "Esta es una historia sobre {A}, que adoraba {P_def}.",
            "Había una vez {A}, que jugaba a menudo cerca {de_P}.",
            "Era {T_ind} cuando {A} se despertó y caminó hasta {P_def}.",
        ),
        "describe": (
            "{P_def} era {J_P} y estaba {lleno_P} de {O_pl}.",
            "Alrededor {de_P}, todo era {J_m}, y había {O_pl} por todas partes.",
            "{P_def} parecía {J_P} aquel día.",
        ),
        "go": (
            "{a} caminó hacia {P_def_J}.",
            "Luego, {a} se acercó {al_P}.",
            "Después de un rato, {a} corrió hasta {P_def}.",
            "{a} decidió visitar {P_def_J}.",
        ),
        "find": (
            "Cerca {de_P}, {a} encontró {O_ind_J}.",
            "{a} miró a su alrededor y vio {O_ind_J} en el suelo.",
            "De repente, {a} descubrió {O_ind_J} detrás {de_P}.",
        ),
        "see": (
            "{a} vio {O_ind_pl_J} y sonrió.",
            "Había {muchos_O} {O_pl} alrededor, y {a} {los_O} contó {uno_O} a {uno_O}.",
            "{a} observó {O_def_pl} durante mucho tiempo.",
        ),
        "meet": (
            "Allí, {a} conoció {a_b}.",
            "Por el camino, {a} se encontró con {b}.",
            "{b} estaba esperando cerca {de_P}.",
            "{a} oyó una voz. ¡Era {b}!",
        ),
        "activity1": (
            "{a} quería {act}.",
            "{a} pasó toda la mañana intentando {act}.",
            "Era hora de {act}, así que {a} se puso manos a la obra.",
        ),
        "activity2": (
            "{a} y {b} decidieron {act} {juntos}.",
            "{Juntos}, {a} y {b} intentaron {act}.",
            "{a} invitó {a_b} a {act}.",
        ),
        "weather": (
            "El cielo se puso gris y empezó a llover.",
            "El sol brillaba con fuerza.",
            "Empezó a soplar un viento frío.",
            "Pronto, unas grandes nubes blancas cubrieron el cielo.",
        ),
        "lose": (
            "¡Oh, no! {a_cap} había perdido {O_def}.",
            "Pero entonces {a} se dio cuenta de que {O_def} había desaparecido.",
            "{a} buscó por todas partes, pero {O_def} no estaba.",
        ),
        "help": (
            "{a} ayudó {a_b} a buscar {O_def}, y pronto {lo_O} encontraron.",
            "Por suerte, {a} sabía dónde estaba {O_def}.",
            "{a} encontró {O_def} detrás {de_P}.",
        ),
        "eat": (
            "Luego, {a} comió {food}.",
            "{a} tenía hambre y comió {food} para almorzar.",
            "Para almorzar, {a} compartió {food} con todos.",
        ),
        "feel": (
            "{a} se sintió muy {F}.",
            "¡{a} estaba tan {F}!",
            "A estas alturas, {a} se sentía {F}.",
        ),
        "home": (
            "Cuando se puso el sol, {a} volvió {al_H}.",
            "Al final del día, {a} regresó {al_H}, {cansado} pero {feliz}.",
            "Esa noche, {a} durmió profundamente en {H_def}.",
        ),
        "end": (
            "Había sido un día maravilloso.",
            "{a} sonrió. Había sido un buen día.",
            "Desde aquel día, {a} y {b} fueron {mejores_amigos}.",
        ),
    },
}


class _Renderer:
    """Renders one plan in one language; tracks first mentions of entities."""

    __slots__ = ("world", "lang", "ents", "seen", "facts", "activities")

    def __init__(self, plan: StoryPlan, world: World, lang: str, overrides: dict):
        self.world, self.lang = world, lang
        self.ents = [world.entity(n) for n in plan.entities]
        self.seen = [False] * len(self.ents)
        self.facts = overrides

    def fact(self, ent: Entity, f: str) -> str:
        return self.facts.get((ent.name, f)) or ent.facts[f]

    def ref(self, i: int, variant: int, full: bool = False) -> str:
        e = self.ents[i]
        if full or not self.seen[i]:
            self.seen[i] = True
            return e.name if self.lang == "en" else e.es_name()
        if variant % 3 == 0:
            n = NOUNS[e.species]
            return "the " + n.en if self.lang == "en" else _ES_DEF[n.g, False] + " " + n.es
        return e.first_name

    def adj_for(self, key: str, gender: str, pl: bool = False) -> str:
        return ADJS[key].en if self.lang == "en" else ADJS[key].forms[gender, pl]

    def group_gender(self, idx) -> str:
        return "f" if all(self.ents[i].gender == "f" for i in idx) else "m"

    def event(self, ev: tuple) -> str:
        et, var = ev[0], ev[1]
        en = self.lang == "en"
        d: dict[str, str] = {}
        if et == "fact":
            e = self.ents[ev[2]]
            self.seen[ev[2]] = True
            p, o, s = fact_clause(self.world, e, ev[3], self.fact(e, ev[3]), self.lang)
            pre = _FACT_PREFIX[self.lang]
            return pre[var % len(pre)] + p + o + s + "."
        if et == "intro":
            _, _, a, p, t, ta = ev
            d["A"] = self.ref(a, var, True)
            self._place(d, p, None)
            tn = NOUNS[t]
            if en:
                d["T"], d["T_adj"] = tn.en, ADJS[ta].en
                d["T_ind"] = _an(ADJS[ta].en + " " + tn.en)
            else:
                d["T_ind"] = _es_np(tn, _ES_IND)
                d["T_ind_adj"] = _es_np(tn, _ES_IND, ta)
        elif et == "describe":
            _, _, p, j, o = ev
            self._place(d, p, None)
            pn = NOUNS[p]
            d["J"] = ADJS[j].en
            d["O_pl"] = NOUNS[o].en_pl if en else NOUNS[o].es_pl
            if not en:
                d["J_P"] = ADJS[j].forms[pn.g, False]
                d["J_m"] = ADJS[j].forms["m", False]
                d["lleno_P"] = "lleno" if pn.g == "m" else "llena"
        elif et == "go":
            _, _, a, p, j = ev
            d["a"] = self.ref(a, var)
            self._place(d, p, j)
        elif et == "find":
            _, _, a, o, j, p = ev
            d["a"] = self.ref(a, var)
            self._place(d, p, None)
            on = NOUNS[o]
            d["O_ind_J"] = _en_np(on, "a", j) if en else _es_np(on, _ES_IND, j)
        elif et == "see":
            _, _, a, o, j = ev
            d["a"] = self.ref(a, var)
            on = NOUNS[o]
            if en:
                d["J"], d["O_pl"] = ADJS[j].en, on.en_pl
            else:
                g = on.g
                d["O_pl"] = on.es_pl
                d["O_ind_pl_J"] = _es_np(on, _ES_IND, j, True)
                d["O_def_pl"] = _es_np(on, _ES_DEF, None, True)
                d["muchos_O"] = "muchos" if g == "m" else "muchas"
                d["los_O"] = "los" if g == "m" else "las"
                d["uno_O"] = "uno" if g == "m" else "una"
        elif et == "meet":
            _, _, a, b, p = ev
            d["a"] = self.ref(a, var)
            d["b"] = self.ref(b, var)
            if not en:
                d["a_b"] = _es_prep("a", d["b"])
            self._place(d, p, None)
        elif et == "activity":
            _, _, subj, act = ev
            t, k = act.split(":")
            d["act"] = TOPIC_VOCAB[t].activities[int(k)][0 if en else 1]
            d["a"] = self.ref(subj[0], var)
            if len(subj) == 2:
                et = "activity2"
                d["b"] = self.ref(subj[1], var // 3)
                if not en:
                    d["a_b"] = _es_prep("a", d["b"])
                    g = self.group_gender(subj)
                    d["juntos"] = "juntos" if g == "m" else "juntas"
                    d["Juntos"] = _cap(d["juntos"])
            else:
                et = "activity1"
        elif et == "lose":
            _, _, a, o = ev
            d["a"] = self.ref(a, var)
            d["O_def"] = self._def(NOUNS[o])
        elif et == "help":
            _, _, a, b, o, p = ev
            d["a"] = self.ref(a, var)
            d["b"] = self.ref(b, var // 3)
            on = NOUNS[o]
            d["O_def"] = self._def(on)
            self._place(d, p, None)
            if not en:
                d["a_b"] = _es_prep("a", d["b"])
                d["lo_O"] = "lo" if on.g == "m" else "la"
        elif et == "eat":
            _, _, a = ev
            e = self.ents[a]
            d["a"] = self.ref(a, var)
            food = self.fact(e, "food")
            d["food"] = food if en else FOODS[food]
        elif et == "feel":
            _, _, a, f = ev
            d["a"] = self.ref(a, var)
            d["F"] = self.adj_for(f, self.ents[a].gender)
        elif et == "home":
            _, _, a = ev
            e = self.ents[a]
            d["a"] = self.ref(a, var)
            hn = NOUNS[self.fact(e, "home")]
            d["H_def"] = self._def(hn)
            if not en:
                d["al_H"] = _es_prep("a", d["H_def"])
                d["cansado"] = ADJS["tired"].forms[e.gender, False]
                d["feliz"] = ADJS["happy"].forms[e.gender, False]
        elif et == "end":
            _, _, a, b = ev
            d["a"] = self.ref(a, var)
            d["b"] = self.ref(b, var // 3)
            if not en:
                g = self.group_gender((a, b))
                d["mejores_amigos"] = "los mejores amigos" if g == "m" else "las mejores amigas"
        if "a" in d:
            d["a_cap"] = _cap(d["a"])
        templates = TEMPLATES[self.lang][et]
        return _cap(templates[var % len(templates)].format_map(d))

    def _def(self, n: Noun) -> str:
        return "the " + n.en if self.lang == "en" else _ES_DEF[n.g, False] + " " + n.es

    def _place(self, d: dict, p: str, j: str | None) -> None:
        n = NOUNS[p]
        if self.lang == "en":
            d["P_def"] = "the " + n.en
            if j is not None:
                d["P_def_J"] = _en_np(n, "the", j)
        else:
            d["P_def"] = pd = _ES_DEF[n.g, False] + " " + n.es
            d["de_P"] = _es_prep("de", pd)
            d["al_P"] = _es_prep("a", pd)
            if j is not None:
                d["P_def_J"] = _es_np(n, _ES_DEF, j)


def render(
    plan: StoryPlan,
    world: World,
    language: str = "en",
    fact_overrides: dict[tuple[str, str], str] | None = None,
) -> str:
    """Text of `plan` in `language` ("en" | "es"). Facts come from the world, then from
    `plan.overrides`, then from `fact_overrides` ({(entity, fact): value})."""
    if language not in LANGUAGES:
        raise ValueError(f"language must be one of {LANGUAGES}, got {language!r}")
    ov = {(e, f): v for e, f, v in plan.overrides}
    if fact_overrides:
        ov.update(fact_overrides)
    r = _Renderer(plan, world, language, ov)
    return " ".join([r.event(ev) for ev in plan.events])


# ----------------------------------------------------------------------------------------------
# Documents


def _choose_language(seed: int, pid: int, languages, spanish_fraction: float) -> str:
    langs = tuple(languages)
    if "en" in langs and "es" in langs:
        u = random.Random(_mix(seed, pid, 2)).random()
        return "es" if u < spanish_fraction else "en"
    if langs in (("en",), ("es",)):
        return langs[0]
    raise ValueError(f"languages must be a non-empty subset of {LANGUAGES}, got {languages!r}")


def iter_documents(
    seed: int = 0,
    languages=("en",),
    spanish_fraction: float = 0.0,
    topics=None,
    world_seed: int = 0,
    entities_per_topic: int = ENTITIES_PER_TOPIC,
    stories: StoryOptions = DEFAULT_STORIES,
    world: World | None = None,
) -> Iterator[Document]:
    """Infinite stream of documents (see generate_documents)."""
    world = world or build_world(world_seed, entities_per_topic)
    for plan in iter_plans(world, seed, topics, stories=stories):
        lang = _choose_language(seed, plan.id, languages, spanish_fraction)
        yield Document(
            id=f"sw-{seed}-{plan.id}-{lang}",
            text=render(plan, world, lang),
            meta={
                "language": lang,
                "topic": plan.topic,
                "entities": list(plan.entities),
                "plan": plan.id,
            },
        )


def generate_documents(
    n_stories: int,
    seed: int = 0,
    languages=("en",),
    spanish_fraction: float = 0.0,
    topics=None,
    world_seed: int = 0,
    entities_per_topic: int = ENTITIES_PER_TOPIC,
    stories: StoryOptions = DEFAULT_STORIES,
    world: World | None = None,
) -> list[Document]:
    """`n_stories` stories of `world` (default `build_world(world_seed, entities_per_topic)`), one
    language each (Spanish with probability `spanish_fraction` when both languages are allowed)."""
    it = iter_documents(
        seed, languages, spanish_fraction, topics, world_seed, entities_per_topic, stories, world
    )
    return [next(it) for _ in range(n_stories)]


# ----------------------------------------------------------------------------------------------
# Fact probes and counterfactual rewrites


@dataclass(frozen=True)
class FactProbe:
    id: str
    prompt: str
    options: tuple[str, ...]  # leading spaces; Spanish options include the article (" la cueva")
    answer: int
    entity: str
    fact: str
    topic: str  # the entity's home topic
    language: str


def fact_probes(
    world: World, language: str = "en", n_options: int = 4, seed: int = 0
) -> list[FactProbe]:
    """One multiple-choice probe per (entity, fact). The prompt is the exact prefix of the clause
    the renderer uses to state the fact, so prompt + correct option occurs verbatim in stories."""
    rng = random.Random(_mix(world.seed, seed, 3))
    out = []
    for e in world.entities:
        for f in FACTS:
            value = e.facts[f]
            distract = [v for v in world.fact_options(e, f) if v != value]
            picks = rng.sample(distract, n_options - 1)
            ans = rng.randrange(n_options)
            values = picks[:ans] + [value] + picks[ans:]
            prompt = fact_clause(world, e, f, value, language)[0]
            opts = tuple(fact_clause(world, e, f, v, language)[1] for v in values)
            out.append(FactProbe(f"{e.name}/{f}/{language}", prompt, opts, ans, e.name, f,
                                 e.home_topic, language))  # fmt: skip
    return out


def rewrite_with_changed_facts(
    plan: StoryPlan, world: World, seed: int, n_changes: int | None = None
) -> tuple[StoryPlan, dict[tuple[str, str], str]]:
    """The same plan with 1-2 of its stated facts changed to other values (stored in
    `plan.overrides`). Returns (new plan, {(entity, fact): new value})."""
    rng = random.Random(_mix(world.seed, seed, plan.id, 4))
    current = {(e, f): v for e, f, v in plan.overrides}
    stated = list(dict.fromkeys(plan.facts))
    k = min(len(stated), n_changes if n_changes is not None else 1 + rng.randrange(2))
    changed: dict[tuple[str, str], str] = {}
    for e_name, f in rng.sample(stated, k):
        e = world.entity(e_name)
        old = current.get((e_name, f)) or e.facts[f]
        new = rng.choice([v for v in world.fact_options(e, f) if v != old])
        changed[(e_name, f)] = new
    current.update(changed)
    ov = tuple((e, f, v) for (e, f), v in current.items())
    return replace(plan, overrides=ov), changed
