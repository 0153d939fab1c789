"""The stylesheet of every HTML page the results write (the report, the leaderboard page)."""

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", Helvetica, Arial, sans-serif;
       margin: 2em auto; max-width: 1400px; padding: 0 1em; color: #222; line-height: 1.4; }
h1 { font-size: 1.6em; } h2 { font-size: 1.25em; border-bottom: 1px solid #ddd; padding-bottom: .2em; margin-top: 2em; }
table { border-collapse: collapse; font-size: .85em; margin: .5em 0; }
th, td { border: 1px solid #ccc; padding: .25em .5em; vertical-align: top; }
th { background: #f3f3f3; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.note, .muted { color: #555; font-size: .85em; max-width: 70em; }
.scroll { overflow-x: auto; }
figure { margin: 1em 0; } figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { color: #555; font-size: .85em; }
code { font-size: .9em; }
.swatch { display: inline-block; width: .8em; height: .8em; margin-right: .3em;
          border: 1px solid #333; vertical-align: baseline; }
td.text { font-family: ui-monospace, Menlo, Consolas, monospace; font-size: .95em; max-width: 60em;
          white-space: pre-wrap; }
nav.toc { margin: .5em 0 1.5em; } nav.toc ol { margin: .3em 0; padding-left: 1.5em; columns: 2; }
"""
