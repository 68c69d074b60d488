// The web page's script: only the server's public API (GET /models, POST /translate).
// Everything the server sends back is put into the page as text (textContent), never as HTML.
"use strict";

const $ = (id) => document.getElementById(id);
let limits = {};

function headers() {
  const result = { "Content-Type": "application/json" };
  const key = $("api-key").value.trim();
  if (key) result["Authorization"] = "Bearer " + key;
  return result;
}

function say(message, isError = false) {
  $("status").textContent = message;
  $("status").className = isError ? "error" : "";
}

function element(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined) node.textContent = text;
  if (className) node.className = className;
  return node;
}

async function call(path, options = {}) {
  const response = await fetch(path, { ...options, headers: headers() });
  const body = await response.json().catch(() => ({ error: "the answer is not JSON" }));
  if (response.status === 401) $("key-box").open = true;
  if (!response.ok) throw new Error(body.error || response.statusText);
  return body;
}

async function loadModels() {
  try {
    const answer = await call("/models");
    limits = answer.limits;
    const select = $("model");
    select.replaceChildren();
    for (const model of answer.models) {
      const option = element("option", `${model.name} (${model.source_language} \u2192 ${model.target_language})`);
      option.value = model.name;
      option.dataset.beam = model.decode.beam;
      option.dataset.attention = model.model.attention;
      select.append(option);
    }
    $("beam").max = limits.max_beam;
    $("n-best").max = limits.max_beam;
    modelChosen();
    $("translate").disabled = false;
    say("");
  } catch (error) {
    say("Cannot list the models: " + error.message, true);
  }
}

function modelChosen() {
  const chosen = $("model").selectedOptions[0];
  if (chosen) $("beam").value = chosen.dataset.beam;
  const attention = Boolean(chosen) && chosen.dataset.attention !== "none";
  $("attention-box").hidden = !attention;
  if (!attention) $("attention").checked = false;
}

async function translate() {
  const lines = $("source").value.split("\n").map((line) => line.trim()).filter((line) => line);
  if (!lines.length) return say("Type a sentence first.", true);
  if (lines.length > limits.max_texts) return say(`At most ${limits.max_texts} lines at a time.`, true);
  const beam = Number($("beam").value);
  const request = { text: lines, model: $("model").value, beam, n_best: Math.min(Number($("n-best").value), beam) };
  if ($("attention").checked) request.attention = true;
  $("translate").disabled = true;
  say("Translating\u2026");
  const started = performance.now();
  try {
    const answer = await call("/translate", { method: "POST", body: JSON.stringify(request) });
    show(answer);
    say(`${answer.translations.length} sentence(s), beam ${answer.options.beam}, ` +
        `${Math.round(performance.now() - started)} ms`);
  } catch (error) {
    say(error.message, true);
  } finally {
    $("translate").disabled = false;
  }
}

function show(answer) {
  const results = $("results");
  results.replaceChildren();
  for (const translation of answer.translations) {
    const [best] = translation.hypotheses;
    const section = element("div", undefined, "result");
    section.append(element("div", translation.source, "source"), element("div", best.text, "best"),
                   tokens(best), hypotheses(translation.hypotheses));
    translation.hypotheses.forEach((hypothesis, i) => {
      if (hypothesis.attention) section.append(heatmap(hypothesis.attention, i + 1));
    });
    results.append(section);
  }
}

function tokens(hypothesis) {
  const row = element("div", undefined, "tokens");
  const pieces = [...hypothesis.tokens, "</s>"];
  pieces.forEach((piece, i) => {
    const score = hypothesis.token_scores[i];
    const chip = element("span", piece, "token");
    chip.append(element("small", score.toFixed(2)));
    chip.style.background = `rgba(31, 95, 168, ${(0.08 + 0.5 * Math.exp(score)).toFixed(3)})`;
    chip.title = `log-probability ${score.toFixed(4)}, probability ${Math.exp(score).toFixed(3)}`;
    row.append(chip);
  });
  return row;
}

function hypotheses(list) {
  const table = element("table");
  const head = element("tr");
  for (const title of ["#", "translation", "score", "log-prob"]) head.append(element("th", title));
  table.append(head);
  list.forEach((hypothesis, i) => {
    const row = element("tr");
    row.className = "hypothesis";
    row.append(element("td", String(i + 1)), element("td", hypothesis.text),
               element("td", hypothesis.score.toFixed(4), "num"), element("td", hypothesis.log_prob.toFixed(4), "num"));
    table.append(row);
  });
  return table;
}

// weights[i][j]: how much target piece i attended to source piece j (each row sums to 1).
function heatmap(attention, rank) {
  const box = element("details");
  box.open = rank === 1;
  box.append(element("summary", `Attention of hypothesis ${rank}`));
  const table = element("table", undefined, "heatmap");
  const head = element("thead");
  const top = element("tr");
  top.append(element("th"));
  for (const piece of attention.source_pieces) top.append(element("th", piece));
  head.append(top);
  table.append(head);
  attention.weights.forEach((row, i) => {
    const line = element("tr");
    line.append(element("th", attention.target_pieces[i]));
    row.forEach((weight, j) => {
      const cell = element("td");
      cell.style.background = `rgba(31, 95, 168, ${weight.toFixed(3)})`;
      cell.title = `${attention.target_pieces[i]} \u2192 ${attention.source_pieces[j]}: ${weight.toFixed(3)}`;
      line.append(cell);
    });
    table.append(line);
  });
  box.append(table);
  return box;
}

$("model").addEventListener("change", modelChosen);
$("translate").addEventListener("click", translate);
$("api-key").addEventListener("change", loadModels);
$("source").addEventListener("keydown", (event) => {
  if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) translate();
});
loadModels();
