"""/docs: one self-contained page (no CDN; these machines are offline) that fetches
/openapi.json and renders every operation with its parameters, bodies and schemas."""

DOCS_HTML = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>reftag API</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
 body{font:15px/1.5 system-ui,sans-serif;margin:0;color:#222;background:#fafafa}
 header{background:#1f2d3d;color:#fff;padding:16px 32px} header h1{margin:0;font-size:22px}
 main{max-width:1000px;margin:0 auto;padding:16px 32px}
 details.op{background:#fff;border:1px solid #ddd;border-radius:6px;margin:8px 0}
 details.op>summary{cursor:pointer;padding:8px 12px;list-style:none;display:flex;gap:12px;align-items:center}
 .m{font:bold 12px monospace;padding:2px 8px;border-radius:4px;color:#fff;min-width:52px;text-align:center}
 .get{background:#2b7bb9}.post{background:#2f9e44}.put{background:#e8890c}.delete{background:#c92a2a}
 .path{font-family:monospace;font-weight:600} .sum{color:#555}
 .body{padding:0 16px 12px} pre{background:#f3f3f3;padding:8px;border-radius:4px;overflow:auto;font-size:13px}
 table{border-collapse:collapse;font-size:14px} td,th{border-bottom:1px solid #eee;padding:4px 10px;text-align:left}
 h2{margin-top:28px;border-bottom:1px solid #ddd} code{background:#f0f0f0;padding:0 3px}
</style></head>
<body><header><h1>reftag API</h1><div id="info"></div></header>
<main><div id="ops">Loading /openapi.json…</div><h2>Schemas</h2><div id="schemas"></div></main>
<script>
"use strict";
const esc = s => String(s).replace(/[&<>"']/g, c => ({"&":"&amp;","<":"&lt;",">":"&gt;",'"':"&quot;","'":"&#39;"}[c]));
let doc;
function resolve(s){ if(s && s.$ref){ return doc.components.schemas[s.$ref.split("/").pop()] || {}; } return s || {}; }
function refName(s){ return s && s.$ref ? s.$ref.split("/").pop() : null; }
function typeOf(s, depth){
  if(!s) return "any";
  const name = refName(s);
  if(name) return depth > 0 ? '<a href="#schema-'+esc(name)+'">'+esc(name)+'</a>' : expand(resolve(s), depth+1);
  if(s.anyOf) return s.anyOf.map(x => typeOf(x, depth)).join(" | ");
  if(s.enum) return s.enum.map(v => esc(JSON.stringify(v))).join(" | ");
  if(s.const !== undefined) return esc(JSON.stringify(s.const));
  if(s.type === "array") return "[" + typeOf(s.items, depth) + "]";
  if(s.type === "object" && s.properties) return expand(s, depth+1);
  if(s.type === "object") return "object";
  let t = esc(s.type || "any"), limits = [];
  for(const k of ["minimum","exclusiveMinimum","maximum","exclusiveMaximum","minLength","maxLength",
                  "minItems","maxItems","pattern","format"])
    if(s[k] !== undefined) limits.push(k + " " + esc(s[k]));
  return limits.length ? t + " <small>(" + limits.join(", ") + ")</small>" : t;
}
function expand(s, depth){
  if(!s.properties) return typeOf(s, depth);
  const req = new Set(s.required || []);
  return "<table>" + Object.entries(s.properties).map(([k, v]) =>
    "<tr><td><code>" + esc(k) + "</code>" + (req.has(k) ? " *" : "") + "</td><td>" + typeOf(v, depth) +
    (v.description ? "<br><small>" + esc(v.description) + "</small>" : "") + "</td></tr>").join("") + "</table>";
}
function content(c){
  return Object.entries(c || {}).map(([media, m]) => "<div><code>" + esc(media) + "</code> " +
    (refName(m.schema) ? '<a href="#schema-' + esc(refName(m.schema)) + '">' + esc(refName(m.schema)) + "</a>"
                       : esc((m.schema && (m.schema.description || m.schema.type)) || "")) + "</div>").join("");
}
function render(){
  document.getElementById("info").innerHTML = esc(doc.info.description || "") + " — OpenAPI " + esc(doc.openapi) +
    ', <a style="color:#9cf" href="/openapi.json">/openapi.json</a>';
  let html = "";
  for(const [path, ops] of Object.entries(doc.paths)) for(const [method, op] of Object.entries(ops)){
    html += '<details class="op"><summary><span class="m ' + method + '">' + method.toUpperCase() +
      '</span><span class="path">' + esc(path) + '</span><span class="sum">' + esc(op.summary || "") +
      (op.security ? " 🔒" : "") + "</span></summary><div class=body>";
    if(op.description) html += "<p>" + esc(op.description) + "</p>";
    if(op.parameters) html += "<h4>Parameters</h4><table>" + op.parameters.map(p => "<tr><td><code>" + esc(p.name) +
      "</code></td><td>" + esc(p.in) + "</td><td>" + typeOf(p.schema, 1) + "</td><td>" + esc(p.description || "") +
      "</td></tr>").join("") + "</table>";
    if(op.requestBody) html += "<h4>Request body</h4>" + content(op.requestBody.content);
    html += "<h4>Responses</h4><table>" + Object.entries(op.responses).map(([code, r]) => "<tr><td><b>" + esc(code) +
      "</b></td><td>" + esc(r.description || "") + "</td><td>" + content(r.content) + "</td></tr>").join("") +
      "</table>";
    html += "</div></details>";
  }
  document.getElementById("ops").innerHTML = html;
  document.getElementById("schemas").innerHTML = Object.entries(doc.components.schemas).map(([name, s]) =>
    '<h3 id="schema-' + esc(name) + '">' + esc(name) + "</h3>" +
    (s.description ? "<p>" + esc(s.description) + "</p>" : "") + expand(s, 1)).join("");
}
fetch("/openapi.json").then(r => r.json()).then(d => { doc = d; render(); })
  .catch(e => { document.getElementById("ops").textContent = "Could not load /openapi.json: " + e; });
</script></body></html>
"""
