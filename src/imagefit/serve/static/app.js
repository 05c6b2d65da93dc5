// imagefit serve: the runs list and predictions. Plain DOM, textContent only (a run or class name is never HTML).
"use strict";

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value !== null && value !== undefined) node.setAttribute(key, value);
  }
  for (const child of children) node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  return node;
}

function link(url, text) {
  return url ? el("a", { href: url }, text) : el("span", { class: "muted" }, "none");
}

function day(iso) {
  return iso ? iso.replace("T", " ").slice(0, 16) : "";
}

function showRuns(data) {
  document.getElementById("folder").textContent = "Runs folder: " + data.runs_dir;
  document.getElementById("limit").textContent = "Images up to " + data.max_upload_mb + " MB each.";
  const body = document.querySelector("#runs tbody");
  const select = document.getElementById("run");
  body.replaceChildren();
  select.replaceChildren();
  for (const run of data.runs) {
    const accuracy = typeof run.test_accuracy === "number" ? run.test_accuracy.toFixed(4) : "";
    const reports = el("td", {}, link(run.report, "report"));
    for (const ev of run.evaluations) reports.append(" · ", link(ev.report, "on " + ev.name));
    body.append(el("tr", { "data-run": run.name, class: run.interrupted ? "interrupted" : null },
      el("td", {}, run.name + (run.interrupted ? " (interrupted)" : "")), el("td", {}, run.dataset || ""),
      el("td", {}, run.model || ""), el("td", { class: "num" }, accuracy), el("td", {}, day(run.date)), reports));
    if (run.predicts) select.append(el("option", { value: run.predict_url }, run.name));
  }
  document.getElementById("runs").hidden = data.runs.length === 0;
  document.getElementById("no-runs").hidden = data.runs.length > 0;
  const studies = document.querySelector("#studies tbody");
  studies.replaceChildren();
  for (const study of data.studies) {
    studies.append(el("tr", { "data-study": study.name }, el("td", {}, study.name), el("td", { class: "num" }, study.runs),
      el("td", {}, day(study.date)), el("td", {}, link(study.comparison, "comparison"))));
  }
  document.getElementById("studies-section").hidden = data.studies.length === 0;
  document.body.dataset.loaded = "runs";
}

function figure(src, caption) {
  return el("figure", {}, el("img", { src: src, alt: caption }), el("figcaption", {}, caption));
}

async function predict(file) {
  const select = document.getElementById("run");
  const card = el("div", { class: "card", "data-file": file.name }, el("h3", {}, file.name));
  document.getElementById("results").prepend(card);
  if (!select.value) {
    card.append(el("p", { class: "error" }, "No run with a model to predict with."));
    card.dataset.state = "error";
    return;
  }
  const topK = Math.max(1, parseInt(document.getElementById("top-k").value, 10) || 5);
  card.append(el("p", { class: "muted" }, "predicting with " + select.selectedOptions[0].textContent + "..."));
  let answer;
  try {
    const response = await fetch(select.value + "?top_k=" + topK, {
      method: "POST", body: file, headers: { "Content-Type": "application/octet-stream" } });
    answer = await response.json().catch(() => ({ error: "the server answered " + response.status }));
  } catch (e) {
    answer = { error: "the server could not be reached (" + e.message + ")" };
  }
  card.lastChild.remove();
  if (answer.error) {
    card.append(el("p", { class: "error" }, answer.error));
    card.dataset.state = "error";
    return;
  }
  card.append(figure(answer.seen, "as the model sees it (" + answer.image_size + " px)"));
  const cam = answer.gradcam;
  if (cam.image) card.append(figure(cam.image, "Grad-CAM for " + cam["class"] + " (red: most)"));
  else card.append(el("p", { class: "note" }, "No Grad-CAM: " + cam.note));
  const list = el("ol", { class: "top" });
  for (const item of answer.top) {
    const bar = el("span", { class: "bar" });
    bar.style.width = Math.round(item.probability * 160) + "px";
    list.append(el("li", { "data-class": item["class"], "data-probability": item.probability },
      el("span", { class: "class" }, item["class"]), " ", el("span", { class: "probability" }, item.probability.toFixed(3)), bar));
  }
  card.append(list);
  card.dataset.state = "done";
}

function predictAll(files) {
  for (const file of files) predict(file);
}

document.addEventListener("DOMContentLoaded", () => {
  fetch("/api/runs").then((r) => r.json()).then(showRuns).catch((e) => {
    document.getElementById("folder").textContent = "The runs could not be read: " + e.message;
  });
  const drop = document.getElementById("drop");
  const input = document.getElementById("files");
  input.addEventListener("change", () => { predictAll(input.files); input.value = ""; });
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    predictAll(e.dataTransfer.files);
  });
});
