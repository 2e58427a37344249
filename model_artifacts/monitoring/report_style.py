"""The monitoring report's look: the page's CSS, for report.py.

A system font stack, a max width, cards, and one palette: the colours the charts draw with
(charts.py) are the page's too, so a drifted bar and a drifted badge are the same red.
"""

from model_artifacts.monitoring.charts import DRIFTED, GRID, MUTED, REFERENCE, WINDOW

PALETTE = f":root{{--blue:{WINDOW};--red:{DRIFTED};--muted:{MUTED};--line:{GRID};--reference:{REFERENCE}}}\n"

CSS = (
    PALETTE
    + """
:root{
  --ink:#0f172a;--text:#1e293b;--bg:#f1f5f9;--card:#fff;--blue-soft:#eff6ff;--red-soft:#fef2f2;
  --amber:#b45309;--amber-soft:#fffbeb;--green:#15803d;--green-soft:#f0fdf4;--grey-soft:#f1f5f9;
  --font:system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,"Noto Sans","Liberation Sans",
    sans-serif;
  --mono:ui-monospace,SFMono-Regular,Menlo,Consolas,"Liberation Mono",monospace}
*{box-sizing:border-box}
html{scroll-behavior:smooth}
body{
  margin:0;background:var(--bg);color:var(--text);font:15px/1.5 var(--font);
  -webkit-font-smoothing:antialiased}
.wrap{max-width:1200px;margin:0 auto;padding:0 24px}
h1,h2,h3{color:var(--ink);line-height:1.25;margin:0}
h1{font-size:30px;font-weight:700;letter-spacing:-.01em}
h2{font-size:21px;margin-bottom:4px}
h3{font-size:15px;margin:22px 0 10px}
code{font-family:var(--mono);font-size:.9em}
b,strong{font-weight:600}
.masthead{background:#0f172a;color:#cbd5e1;padding:28px 0 24px}
.masthead h1{color:#fff;margin:4px 0 18px}
.eyebrow{margin:0;text-transform:uppercase;letter-spacing:.08em;font-size:12px;color:#94a3b8}
.meta{display:grid;grid-template-columns:repeat(auto-fit,minmax(220px,1fr));gap:16px;margin:0}
.meta dt{font-size:12px;text-transform:uppercase;letter-spacing:.06em;color:#94a3b8}
.meta dd{margin:2px 0 0;color:#f8fafc}
.meta .sub{display:block;color:#94a3b8;font-size:13px}
.meta .warn-text{color:#fcd34d}
.toc{
  position:sticky;top:0;z-index:5;background:rgba(255,255,255,.94);border-bottom:1px solid var(--line);
  backdrop-filter:blur(6px)}
.toc .wrap{display:flex;gap:4px;overflow-x:auto;padding-top:8px;padding-bottom:8px}
.toc a{
  color:var(--muted);text-decoration:none;font-size:14px;padding:4px 10px;border-radius:999px;
  white-space:nowrap}
.toc a:hover{background:var(--grey-soft);color:var(--ink)}
main{padding-top:24px;padding-bottom:8px}
.card{
  background:var(--card);border:1px solid var(--line);border-radius:14px;padding:22px 24px;
  margin-bottom:20px;box-shadow:0 1px 2px rgba(15,23,42,.04)}
.card.inset{box-shadow:none;margin:0;padding:16px 18px}
section{scroll-margin-top:56px}
.lede{color:var(--muted);margin:0 0 14px}
.summary{border-width:1px 1px 1px 6px}
.summary.tone-bad{border-left-color:var(--red)}
.summary.tone-good{border-left-color:var(--green)}
.summary.tone-warn{border-left-color:var(--amber)}
.summary.tone-none{border-left-color:var(--muted)}
.status-line{display:flex;gap:16px;align-items:center;flex-wrap:wrap}
.status-badge{
  font-size:15px;font-weight:700;text-transform:uppercase;letter-spacing:.06em;padding:6px 14px;
  border-radius:8px;color:#fff}
.status-badge.tone-bad{background:var(--red)}
.status-badge.tone-good{background:var(--green)}
.status-badge.tone-warn{background:var(--amber)}
.status-badge.tone-none{background:var(--muted)}
.headline.long{font-size:16px;font-weight:500}
.headline{font-size:20px;font-weight:600;color:var(--ink);margin:0;flex:1;min-width:280px}
.tiles{display:grid;grid-template-columns:repeat(auto-fit,minmax(160px,1fr));gap:12px;margin:18px 0 4px}
.tile{border:1px solid var(--line);border-radius:10px;padding:10px 14px;background:#fbfdff}
.tile .label{display:block;font-size:12px;text-transform:uppercase;letter-spacing:.05em;color:var(--muted)}
.tile .value{
  display:block;font-size:24px;font-weight:650;color:var(--ink);font-variant-numeric:tabular-nums}
.tile .hint{display:block;font-size:12.5px;color:var(--muted)}
.tile.tone-bad{background:var(--red-soft);border-color:#fecaca}
.tile.tone-bad .value{color:var(--red)}
.columns{display:grid;grid-template-columns:3fr 2fr;gap:24px}
.findings,.actions ol{margin:0;padding-left:20px}
.findings li,.actions li{margin:4px 0}
.actions{background:var(--blue-soft);border-radius:10px;padding:2px 18px 12px}
.summary.tone-bad .actions{background:var(--amber-soft)}
.grid{display:grid;gap:16px}
.grid-2{grid-template-columns:repeat(2,minmax(0,1fr))}
.grid-3{grid-template-columns:repeat(3,minmax(0,1fr))}
.grid-2-3{grid-template-columns:minmax(0,2fr) minmax(0,3fr)}
.span-2{grid-column:span 2}
section>.grid,section>.plot,.tiles+.plot{margin-top:16px}
.align-start{align-items:start}
.plot{
  margin:0;border:1px solid var(--line);border-radius:12px;padding:12px 14px 10px;background:#fff;
  min-width:0}
.plot.drifted{
  border-color:#fca5a5;background:linear-gradient(#fff,#fff) padding-box;
  box-shadow:inset 4px 0 0 var(--red)}
.plot figcaption{display:flex;justify-content:space-between;align-items:center;gap:8px;margin-bottom:4px}
.plot .name{font-weight:600;color:var(--ink);overflow-wrap:anywhere}
.plot svg{display:block;width:100%;height:auto}
.plot svg *{stroke-linejoin:round;stroke-linecap:butt}
svg text{font-family:var(--font)}
.plot .stats{margin:4px 0 0;font-size:12.5px;color:var(--muted);font-variant-numeric:tabular-nums}
.plot .caption{margin:6px 0 0;font-size:13px;color:var(--muted)}
.plot.empty{display:flex;flex-direction:column;min-height:120px}
.badge{
  display:inline-block;font-size:12px;font-weight:600;padding:1px 9px;border-radius:999px;
  white-space:nowrap;margin-right:4px}
.badge.tone-bad{background:var(--red-soft);color:var(--red);border:1px solid #fecaca}
.badge.tone-good{background:var(--green-soft);color:var(--green);border:1px solid #bbf7d0}
.badge.tone-warn{background:var(--amber-soft);color:var(--amber);border:1px solid #fde68a}
.badge.tone-none{background:var(--grey-soft);color:var(--muted);border:1px solid var(--line)}
.legend{display:flex;gap:18px;font-size:13px;color:var(--muted);margin:6px 0 0}
.swatch{display:inline-block;width:12px;height:12px;border-radius:3px;margin-right:6px;vertical-align:-1px}
.swatch.window{background:var(--blue);opacity:.8}
.swatch.drifted{background:var(--red);opacity:.8}
.swatch.reference{border:1.5px solid var(--reference)}
.note{padding:10px 14px;border-radius:10px;background:var(--grey-soft);color:var(--text);margin:10px 0}
.note.tone-warn{background:var(--amber-soft);color:#92400e}
.scroll{overflow-x:auto}
table{width:100%;border-collapse:collapse;font-size:13.5px;font-variant-numeric:tabular-nums}
th{
  text-align:left;font-size:12px;text-transform:uppercase;letter-spacing:.04em;color:var(--muted);
  font-weight:600;border-bottom:1px solid var(--line);padding:8px 10px;vertical-align:bottom}
td{border-bottom:1px solid var(--line);padding:7px 10px;vertical-align:top;overflow-wrap:break-word}
tbody tr:last-child td{border-bottom:0}
tbody tr:hover{background:#f8fafc}
.num{text-align:right}
td.num{white-space:nowrap}
.sub{display:block;color:var(--muted);font-size:12.5px}
.sub-inline{color:var(--muted);font-size:12px}
.bar{
  display:inline-block;width:56px;height:7px;background:var(--grey-soft);border-radius:4px;
  margin-right:8px;vertical-align:1px;overflow:hidden}
.bar i{display:block;height:100%;background:var(--blue)}
.bar.drifted i{background:var(--red)}
.flag{color:var(--red);font-weight:600}
.chips{display:flex;flex-wrap:wrap;gap:8px}
.chip{background:var(--grey-soft);border-radius:999px;padding:2px 12px;font-size:13px}
.facts{margin:0;display:grid;gap:8px}
.facts dt{font-size:12px;text-transform:uppercase;letter-spacing:.05em;color:var(--muted)}
.facts dd{margin:0}
.card.inset.slice{margin-top:16px}
.card.inset h3{margin-top:0}
.muted{color:var(--muted)}
.small{font-size:12.5px}
footer{padding:8px 24px 40px;color:var(--text)}
footer h2{margin:12px 0 8px}
footer p{max-width:900px}
@media (max-width:900px){
  .grid-3{grid-template-columns:repeat(2,minmax(0,1fr))}
  .columns{grid-template-columns:1fr}}
@media (max-width:620px){.grid-2,.grid-3{grid-template-columns:1fr}}
@media print{.toc{display:none}.card{break-inside:avoid}body{background:#fff}}
"""
)
