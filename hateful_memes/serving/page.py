"""The service's one page (GET /): self-contained, no external resources.

A person drops or picks a meme image; the first call sends the image alone, so the caption is
read by OCR and shown in an editable box; "Score with this caption" sends the image again with
the edited text. Each task's labels are drawn as bars with the 0.5 cut marked and the decided
labels (decision.decide_all) ticked. Server text is put in with textContent only, never as HTML.
`#result[data-state]` is idle, busy, done or error (the browser check waits on it).

Where no run reads pictures (`render_page(needs_images=False)`: text-only runs) a caption typed
with no image is scored too, as the service takes it; a dropped image is still read by OCR.
The caption's label says where the caption in the box came from (`#source`): read by OCR or
given, from each result's `ocr`, and typed once the person edits it.
"""

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Hateful memes classifier</title>
<style>
  body { font: 15px/1.4 system-ui, sans-serif; max-width: 760px; margin: 2em auto;
         padding: 0 1em; color: #222; }
  #drop { border: 2px dashed #888; border-radius: 8px; padding: 1.5em; text-align: center;
          cursor: pointer; }
  #drop.over { background: #eef5ff; border-color: #36c; }
  #preview { max-width: 100%; max-height: 280px; display: none; margin: 1em auto; }
  textarea { width: 100%; box-sizing: border-box; font: inherit; }
  button { font: inherit; padding: .3em 1em; margin-top: .4em; }
  #status { color: #555; min-height: 1.4em; }
  #status.error { color: #b00; }
  h3 { margin: 1em 0 .3em; }
  .row { display: grid; grid-template-columns: 9em 1fr 4em; gap: .5em; align-items: center;
         margin: 2px 0; }
  .track { position: relative; height: 14px; background: #eee; border-radius: 3px; }
  .bar { height: 100%; background: #9ab; border-radius: 3px; }
  .row.on .bar { background: #c33; }
  .row.on .name { font-weight: bold; }
  .row.on .name::before { content: "\\2713 "; }
  .cut { position: absolute; left: 50%; top: -3px; bottom: -3px; border-left: 1px dashed #333; }
  .score { text-align: right; font-variant-numeric: tabular-nums; }
  .note { color: #666; font-size: 13px; }
</style>
</head>
<body data-needs-images="true">
<h1>Hateful memes classifier</h1>
<div id="drop">Drop a meme image here, or click to choose one
  <input type="file" id="file" accept="image/*" hidden></div>
<img id="preview" alt="the meme">
<p><label for="caption">Caption <span id="source">(read by OCR from the meme you drop; edit it
if it is wrong)</span>:</label>
<textarea id="caption" rows="2" placeholder="the meme's text"></textarea>
<button id="rescore" disabled>Score with this caption</button></p>
<p id="status"></p>
<div id="result" data-state="idle"></div>
<p class="note" id="textonly" hidden>These runs read only the caption: type it and score
it, or drop a meme to have its caption read.</p>
<p class="note">Bars: each label's score, with its threshold folded onto the dashed 0.5 line.
Ticked: the labels decided for this meme; a meme is decided hateful when it is given a protected
category or an attack type. <span id="model"></span></p>
<script>
"use strict";
const $ = (id) => document.getElementById(id);
const TASKS = [["hate", "Hateful"], ["pc", "Protected category (Task A)"],
               ["attack", "Attack type (Task B)"]];
// Set by the service: text-only runs score a caption sent without an image.
const NEEDS_IMAGES = document.body.dataset.needsImages !== "false";
let current = null;

// Where the caption in the box came from, for the meme shown: OCR, or the person.
const SOURCE = {ocr: "read by OCR; edit it if it is wrong", given: "as given",
                typed: "as typed, not scored yet", reading: "being read by OCR",
                textOnly: "type it, or drop a meme to have it read by OCR"};
function source(kind) {
  $("source").textContent = "(" + SOURCE[kind] + ")";
}

function status(text, error) {
  $("status").textContent = text;
  $("status").className = error ? "error" : "";
}

function render(body) {
  const out = $("result");
  out.replaceChildren();
  for (const [task, title] of TASKS) {
    const scores = body["pred_" + task];
    if (!scores) continue;
    let decided = body.labels[task];
    if (!Array.isArray(decided)) decided = [decided];
    const h = document.createElement("h3");
    h.textContent = title;
    out.appendChild(h);
    for (const [label, score] of Object.entries(scores)) {
      const row = document.createElement("div");
      row.className = "row" + (decided.includes(label) ? " on" : "");
      row.dataset.label = label;
      const name = document.createElement("span");
      name.className = "name";
      name.textContent = label;
      const track = document.createElement("div");
      track.className = "track";
      const bar = document.createElement("div");
      bar.className = "bar";
      bar.style.width = (100 * score).toFixed(1) + "%";
      const cut = document.createElement("div");
      cut.className = "cut";
      track.append(bar, cut);
      const value = document.createElement("span");
      value.className = "score";
      value.textContent = score.toFixed(3);
      row.append(name, track, value);
      out.appendChild(row);
    }
  }
  $("model").textContent = "Model: " + body.model.runs.join(" + ") + " on " + body.model.device;
}

async function send(withText) {
  if (!current && (NEEDS_IMAGES || !withText)) return;
  const form = new FormData();
  if (current) form.append("image", current);
  if (withText) form.append("text", $("caption").value);
  $("result").dataset.state = "busy";
  status(withText ? "scoring with your caption..." : "reading the caption and scoring...");
  try {
    const r = await fetch("predict", { method: "POST", body: form });
    // A proxy in front of the service may answer an error with HTML, not JSON.
    const body = await r.json().catch(() => ({}));
    if (!r.ok) throw new Error(body.detail || (r.status + " " + r.statusText));
    $("caption").value = body.text;
    source(body.ocr ? "ocr" : "given");
    render(body);
    status(body.ocr ? "caption read by OCR: edit it and score again if it is wrong"
                    : "scored with the caption given");
    $("result").dataset.state = "done";
  } catch (e) {
    $("result").replaceChildren();
    status("error: " + e.message, true);
    $("result").dataset.state = "error";
  }
}

function choose(file) {
  if (!file) return;
  current = file;
  $("preview").src = URL.createObjectURL(file);
  $("preview").style.display = "block";
  $("caption").value = "";
  source("reading");
  $("rescore").disabled = false;
  send(false);
}

$("drop").addEventListener("click", () => $("file").click());
$("file").addEventListener("change", () => choose($("file").files[0]));
$("drop").addEventListener("dragover", (e) => {
  e.preventDefault();
  $("drop").classList.add("over");
});
$("drop").addEventListener("dragleave", () => $("drop").classList.remove("over"));
$("drop").addEventListener("drop", (e) => {
  e.preventDefault();
  $("drop").classList.remove("over");
  choose(e.dataTransfer.files[0]);
});
$("rescore").addEventListener("click", () => send(true));
$("caption").addEventListener("input", () => source("typed"));
if (!NEEDS_IMAGES) {
  source("textOnly");
  $("textonly").hidden = false;
  $("rescore").disabled = false;
}
</script>
</body>
</html>
"""


def render_page(needs_images: bool) -> str:
    """PAGE for runs that read pictures (True), or for text-only runs (False)."""
    if needs_images:
        return PAGE
    return PAGE.replace('<body data-needs-images="true">', '<body data-needs-images="false">', 1)
