// The page behind whichvoice's server: a file, the microphone or a synthesized phrase ->
// POST /v1/identify -> the voice, a bar per voice and the spectrogram.
// document.body.dataset.state is "busy" while a request runs, then "done" or "error".
"use strict";

const KEY_STORAGE = "whichvoice.apiKey";
const MAX_RECORD_S = 15; // s of microphone audio, then recording stops by itself

const $ = (id) => document.getElementById(id);

/** A user's string (a voice's name, a phrase, a file name) as a part of a line of the page:
 * shown isolated from the page's own words and numbers around it, so that a right-to-left
 * one is not reordered with them ("Enrolled 1 :صوت clip added"). */
const user = (text) => ({ user: String(text) });

/** ``parts`` (the page's strings, user(...) strings, nested arrays) as nodes: each user string
 * in a <bdi> of its own. */
function nodes(parts) {
  return [parts].flat(Infinity).map((part) => {
    if (typeof part === "string") return part;
    const bdi = document.createElement("bdi");
    bdi.textContent = part.user;
    return bdi;
  });
}

/** ``element`` shows ``parts`` (see nodes). */
function say(element, ...parts) {
  element.replaceChildren(...nodes(parts));
}

/** ``parts`` as the words they show (to compare with an element's textContent). */
function words(parts) {
  return [parts].flat(Infinity).map((part) => (typeof part === "string" ? part : part.user)).join("");
}

/** ``parts`` as plain text (a title, an aria-label): each user string between Unicode's first
 * strong isolate and its pop, the <bdi> of an attribute. */
function plain(...parts) {
  return [parts].flat(Infinity)
    .map((part) => (typeof part === "string" ? part : `\u2068${part.user}\u2069`)).join("");
}

const recorder = { stream: null, context: null, chunks: [], samples: 0, timer: null };
let voicesLoaded = false; // the voice <select> is filled
let galleryVoices = 0; // voices enrolled, as the gallery list last showed them

// ---------------------------------------------------------------- API calls

/** An error to show as it is; ``kind`` is the server's (``silent``, ...) when it sent one. */
class ApiError extends Error {
  constructor(message, kind = null) {
    super(message);
    this.kind = kind;
  }
}

function apiHeaders(extra = {}) {
  const key = $("api-key").value.trim();
  return key ? { ...extra, "X-API-Key": key } : extra;
}

/** What to do about a refused API key: enter one, or check the one entered. */
function keyHint() {
  return $("api-key").value.trim()
    ? "check the API key at the top of the page" : "enter the API key at the top of the page";
}

/** fetch() that turns the server's {"error", "kind"} answers into an ApiError. */
async function api(path, options = {}) {
  let response;
  if (!/^[\x20-\x7e]*$/.test($("api-key").value.trim())) {
    // fetch refuses such a header before sending anything
    throw new ApiError("The API key is ASCII letters, digits and symbols only: check what was typed at the top of the page.");
  }
  try {
    response = await fetch(path, { ...options, headers: apiHeaders(options.headers) });
  } catch (e) {
    throw new ApiError(`The server cannot be reached (${e.message}).`);
  }
  if (response.ok) return response;
  let message = `${response.status} ${response.statusText}`;
  let kind = null;
  try {
    const body = await response.json();
    if (body && body.error) message = body.error;
    if (body && body.kind) kind = body.kind;
  } catch (e) {
    // not JSON: the status line says enough
  }
  if (response.status === 401) message += ` (${keyHint()})`;
  throw new ApiError(`${message} [HTTP ${response.status}]`, kind);
}

// ---------------------------------------------------------------- state and errors

/** The error (a string, or parts as ``say`` takes them), in the card of ``near``, a control of
 * the action that failed, else in its place above the result; scrolled into view. */
function showError(message, near = null) {
  const box = $("error");
  const card = near && near.closest ? near.closest(".card") : null;
  const home = card || $("error-home");
  if (box.parentElement !== home) home.append(box);
  say(box, message);
  box.hidden = false;
  if (box.scrollIntoView) box.scrollIntoView({ block: "nearest" });
}

/** Tell a screen reader ``text`` (a polite status; the same text twice is said twice). */
function announce(text) {
  const line = $("announcer");
  line.textContent = "";
  setTimeout(() => { line.textContent = text; }, 50);
}

function clearError() {
  $("error").hidden = true;
  $("error").textContent = "";
}

function setBusy(busy) {
  document.body.classList.toggle("busy", busy);
  $("file-input").disabled = busy;
  $("record-btn").disabled = busy || recorder.context !== null;
  $("speak-btn").disabled = busy || !voicesLoaded;
  // one action at a time: a second click would enroll the same files twice, or remove a
  // voice already removed
  for (const id of ["enroll-btn", "diarize-file"]) $(id).disabled = busy;
  $("verify-btn").disabled = busy || !galleryVoices;
  $("live-btn").disabled = busy || live.socket !== null;
  for (const b of document.querySelectorAll("#gallery-list button")) b.disabled = busy;
}

/** Run one user action: busy while it runs, then state "done" or "error". Its error is shown
 * in the card of ``near`` (a control of the action's own card: not where the focus is then,
 * which a recording that stops by itself finds anywhere), after ``what`` (the action in
 * words, parts as ``say`` takes them). */
async function run(action, near, what) {
  clearError();
  // disabling the control that started the action drops the keyboard focus to the page:
  // it goes back there afterwards (a removed voice's button: the one now in its place)
  const focused = document.activeElement;
  const item = focused && focused.closest ? focused.closest("#gallery-list li") : null;
  const place = item ? [...item.parentNode.children].indexOf(item) : -1;
  setBusy(true);
  document.body.dataset.state = "busy";
  try {
    await action();
    document.body.dataset.state = "done";
  } catch (e) {
    const message = e instanceof ApiError ? e.message : `something went wrong: ${e.message}`;
    showError([what, " failed: ", message], near);
    document.body.dataset.state = "error";
  } finally {
    setBusy(false);
    restoreFocus(focused, place);
  }
}

function restoreFocus(focused, place) {
  if (!focused || focused === document.body) return;
  if (document.activeElement && document.activeElement !== document.body) return;  // moved on
  if (focused.isConnected) {
    // still disabled (Live, once on): the control beside it that is not (Stop)
    const beside = focused.disabled && focused.parentElement
      ? focused.parentElement.querySelector("button:not([disabled])") : focused;
    if (beside) beside.focus();
    return;
  }
  if (place < 0) return;
  const buttons = $("gallery-list").querySelectorAll("button");
  if (buttons.length) buttons[Math.min(place, buttons.length - 1)].focus();
  else $("enroll-name").focus();  // the list is empty now
}

// ---------------------------------------------------------------- identify and show

/** No answer on screen; ``working`` (parts as ``say`` takes them) says what is being done
 * meanwhile, on screen and to a screen reader (the result's status line). */
function clearResult(working = null) {
  $("result-body").hidden = true;
  $("result-empty").hidden = false;
  say($("result-empty"), working || "Nothing identified yet.");
  say($("result-status"), working || "");
  delete document.body.dataset.answer;
  delete document.body.dataset.engine;
}

async function identify(blob, filename, source) {
  // a failed request leaves no earlier answer under its error
  clearResult(["Identifying ", source, "…"]);
  const form = new FormData();
  form.append("file", blob, filename);
  let result;
  try {
    const response = await api("/v1/identify?spectrogram=true", { method: "POST", body: form });
    result = await response.json();
  } catch (e) {
    clearResult();
    throw e;
  }
  showResult(result, source);
  // which engine made it: the gallery's answer carries it once a voice is enrolled; else
  // POST /v1/trace, when an engine head reads the server's encoder (nothing shown otherwise)
  if (!(result.gallery && result.gallery.engine)) showEngine(await traced(blob, filename));
}

/** The server's /v1/trace answer for the clip, or null (no engine head here, or an error:
 * the voice's answer stands alone). */
async function traced(blob, filename) {
  const form = new FormData();
  form.append("file", blob, filename);
  try {
    const response = await api("/v1/trace", { method: "POST", body: form });
    return await response.json();
  } catch (e) {
    return null;
  }
}

function showEngine(engine) {
  $("result-engine").hidden = !engine;
  if (!engine) {
    delete document.body.dataset.engine;
    return;
  }
  // no "% sure": the head's share of its likeliest family is not the chance of being right
  // (a person's clip took rhvoice at 0.996); "unknown" is a person or an engine never seen
  const score = engine.engine_score == null ? ""
    : ` (engine score ${engine.engine_score.toFixed(2)}`
      + (engine.engine_threshold == null ? ")" : ` ≥ ${engine.engine_threshold.toFixed(2)})`);
  $("result-engine").textContent = engine.engine_known
    ? `Made by: ${engine.engine}${score}.`
    : "Made by: not an engine it knows (a person, or an engine it never saw; nearest "
      + `${engine.engine_nearest}).`;
  document.body.dataset.engine = engine.engine;
}

function percent(p) {
  return `${(100 * p).toFixed(p >= 0.995 || p < 0.001 ? 0 : 1)}%`;
}

const MAX_BARS = 10;  // bars drawn for an answer: the best ones

/** ``result`` (a /v1/identify answer) on screen; ``source`` names what was sent (parts as
 * ``say`` takes them). */
function showResult(result, source) {
  $("result-empty").hidden = true;
  $("result-body").hidden = false;
  // one answer (the server's rule): an enrolled voice, else the classifier's voice when it
  // knows it, else "unknown"; each side's own answer is detail underneath
  const gallery = result.gallery;
  const classifier = result.classifier;
  // the bars of whoever answered: the enrolled voices' cosine scores when the gallery did (or
  // there is no classifier), else the classifier's probabilities; one bar is marked only when
  // it is the answer's (a review: "unknown" over a green 98 % bar read as an answer)
  const byScore = !classifier || result.answer_source === "gallery";
  const answered = result.answer_source === "none" ? null : result.voice;
  $("result-voice").textContent = result.voice;
  document.body.dataset.answer = result.answer_source;
  if (result.answer_source === "gallery") {
    $("result-confidence").textContent =
      `enrolled voice, score ${gallery.score.toFixed(2)} ≥ ${gallery.threshold.toFixed(2)}`;
  } else if (result.answer_source === "classifier") {
    $("result-confidence").textContent = `${percent(result.confidence)} sure`;
  } else {
    $("result-confidence").textContent = "not a voice it knows";
  }
  // what a screen reader hears: the answer in one line, not every bar under it
  say($("result-status"), user(result.voice), `: ${$("result-confidence").textContent}.`);
  const windows = `${result.windows} window${result.windows === 1 ? "" : "s"}`;
  const meta = [source, `: ${result.duration_s.toFixed(2)} s of audio`];
  meta.push(byScore ? ", compared with the enrolled voices." : `, ${windows} scored.`);
  if (classifier && result.answer_source !== "classifier") {
    const why = classifier.known === false
      ? ` (open-set score ${classifier.openset_score.toFixed(2)} < ${classifier.openset_threshold.toFixed(2)})`
      : "";
    meta.push(" Classifier: nearest ", user(classifier.voice), `${why}.`);
  }
  if (gallery && result.answer_source !== "gallery") {
    meta.push(" Enrolled voices: nearest ", user(gallery.nearest),
      ` (score ${gallery.score.toFixed(2)} < ${gallery.threshold.toFixed(2)}).`);
  }
  say($("result-meta"), meta);
  // which engine family made it, when the server's engine head reads its encoder
  showEngine(gallery && gallery.engine ? gallery : null);

  const bars = $("bars");
  bars.replaceChildren();
  bars.setAttribute("aria-label", byScore ? "Score per enrolled voice"
    : "The classifier's probability per voice");
  const values = byScore ? gallery.scores : result.probabilities;
  const every = Object.entries(values).sort((a, b) => b[1] - a[1]);
  // the best ten (a gallery of thousands drew a bar each), and how many more there are
  const ranked = every.slice(0, MAX_BARS);
  for (const [voice, p] of ranked) {
    const bar = document.createElement("div");
    bar.className = voice === answered ? "bar best" : "bar";
    bar.dataset.voice = voice;
    bar.setAttribute("role", "listitem");
    const name = document.createElement("span");
    name.className = "bar-name";
    say(name, user(voice));
    const track = document.createElement("span");
    track.className = "bar-track";
    const fill = document.createElement("span");
    fill.className = "bar-fill";
    fill.style.width = `${(100 * Math.max(p, 0)).toFixed(1)}%`;
    track.append(fill);
    const value = document.createElement("span");
    value.className = "bar-value";
    value.textContent = byScore ? p.toFixed(2) : percent(p);
    bar.append(name, track, value);
    bars.append(bar);
  }

  if (every.length > ranked.length) {
    const more = document.createElement("div");
    more.className = "bar-more";
    more.setAttribute("role", "listitem");
    more.textContent = `and ${every.length - ranked.length} more`;
    bars.append(more);
  }

  const img = $("spectrogram");
  if (result.spectrogram_png) {
    img.src = result.spectrogram_png;
    img.hidden = false;
  } else {
    img.removeAttribute("src");
    img.hidden = true;
  }
}

// ---------------------------------------------------------------- 1. a file

function identifyFile(file) {
  if (!file) return;
  run(() => identify(file, file.name, user(file.name)), $("drop-zone"),
    ["Identifying ", user(file.name)]);
}

function setUpFile() {
  const input = $("file-input");
  input.addEventListener("change", () => {
    const file = input.files[0];
    input.value = ""; // so that choosing the same file again fires another change
    identifyFile(file);
  });
  const zone = $("drop-zone");
  for (const type of ["dragenter", "dragover"]) {
    zone.addEventListener(type, (e) => {
      e.preventDefault();
      zone.classList.add("over");
    });
  }
  for (const type of ["dragleave", "drop"]) {
    zone.addEventListener(type, () => zone.classList.remove("over"));
  }
  zone.addEventListener("drop", (e) => {
    e.preventDefault();
    if (document.body.classList.contains("busy")) return;
    identifyFile(e.dataTransfer.files[0]);
  });
  // a file dropped beside the zone must not make the browser navigate away to it
  for (const type of ["dragover", "drop"]) window.addEventListener(type, (e) => e.preventDefault());
}

// ---------------------------------------------------------------- 2. the microphone

// Runs on the audio thread: hands each block of mono samples to the page.
const CAPTURE_WORKLET = `
class Capture extends AudioWorkletProcessor {
  process(inputs) {
    const channel = inputs[0][0];
    if (channel) this.port.postMessage(channel.slice(0));
    return true;
  }
}
registerProcessor("capture", Capture);
`;

/** A node of ``context`` whose port receives each block of mono samples it is given. */
async function captureNode(context) {
  const url = URL.createObjectURL(new Blob([CAPTURE_WORKLET], { type: "text/javascript" }));
  try {
    await context.audioWorklet.addModule(url);
  } finally {
    URL.revokeObjectURL(url);
  }
  return new AudioWorkletNode(context, "capture", { channelCount: 1, channelCountMode: "explicit" });
}

/** 16-bit PCM mono WAV bytes of float samples in [-1, 1]. */
function encodeWav(chunks, rate) {
  const n = chunks.reduce((sum, c) => sum + c.length, 0);
  const buffer = new ArrayBuffer(44 + 2 * n);
  const view = new DataView(buffer);
  const text = (offset, s) => [...s].forEach((ch, i) => view.setUint8(offset + i, ch.charCodeAt(0)));
  text(0, "RIFF");
  view.setUint32(4, 36 + 2 * n, true);
  text(8, "WAVE");
  text(12, "fmt ");
  view.setUint32(16, 16, true); // size of the fmt chunk
  view.setUint16(20, 1, true); // PCM
  view.setUint16(22, 1, true); // mono
  view.setUint32(24, rate, true);
  view.setUint32(28, 2 * rate, true); // bytes per second
  view.setUint16(32, 2, true); // bytes per frame
  view.setUint16(34, 16, true); // bits per sample
  text(36, "data");
  view.setUint32(40, 2 * n, true);
  let offset = 44;
  for (const chunk of chunks) {
    for (let i = 0; i < chunk.length; i++, offset += 2) {
      const s = Math.max(-1, Math.min(1, chunk[i]));
      view.setInt16(offset, s < 0 ? s * 0x8000 : s * 0x7fff, true);
    }
  }
  return new Blob([buffer], { type: "audio/wav" });
}


function showRecordStatus() {
  const seconds = recorder.context ? recorder.samples / recorder.context.sampleRate : 0;
  $("record-status").textContent = `Recording… ${seconds.toFixed(1)} s of ${MAX_RECORD_S} s`;
}

async function startRecording() {
  clearError();
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    showError("This browser gives no microphone here: open the page over https or on localhost.",
      $("record-btn"));
    document.body.dataset.state = "error";
    return;
  }
  $("record-btn").disabled = true;
  try {
    recorder.stream = await navigator.mediaDevices.getUserMedia({
      audio: { channelCount: 1, echoCancellation: false, noiseSuppression: false, autoGainControl: false },
    });
    const context = new AudioContext();
    recorder.context = context;
    const capture = await captureNode(context);
    const source = context.createMediaStreamSource(recorder.stream);
    recorder.chunks = [];
    recorder.samples = 0;
    const maxSamples = MAX_RECORD_S * context.sampleRate;
    capture.port.onmessage = (e) => {
      if (recorder.samples >= maxSamples) return;
      const block = e.data.subarray(0, maxSamples - recorder.samples);
      recorder.chunks.push(block);
      recorder.samples += block.length;
      let peak = 0;
      for (const s of block) peak = Math.max(peak, Math.abs(s));
      $("level").style.width = `${Math.min(100, 100 * peak)}%`;
      if (recorder.samples >= maxSamples) stopRecording();
    };
    source.connect(capture);
    await context.resume();
    $("stop-btn").disabled = false;
    // Record, disabled, dropped the keyboard focus to the page: Stop is the control now
    if (document.activeElement === document.body) $("stop-btn").focus();
    document.body.classList.add("recording");
    // the seconds count on screen ten times a second; a screen reader is told once
    recorder.timer = setInterval(showRecordStatus, 100);
    showRecordStatus();
    announce(`Recording, up to ${MAX_RECORD_S} s: Stop sends it.`);
  } catch (e) {
    releaseMicrophone();
    $("record-btn").disabled = false;
    if (document.activeElement === document.body) $("record-btn").focus();
    const why = e.name === "NotAllowedError" ? "permission was refused" : e.message;
    showError(`The microphone cannot be used: ${why}.`, $("record-btn"));
    document.body.dataset.state = "error";
  }
}

function releaseMicrophone() {
  clearInterval(recorder.timer);
  if (recorder.stream) recorder.stream.getTracks().forEach((t) => t.stop());
  if (recorder.context) recorder.context.close();
  recorder.stream = null;
  recorder.context = null;
  document.body.classList.remove("recording");
  $("stop-btn").disabled = true;
  $("level").style.width = "0";
}

function stopRecording() {
  if (!recorder.context) return;
  const rate = recorder.context.sampleRate;
  const seconds = recorder.samples / rate;
  const wav = encodeWav(recorder.chunks, rate);
  recorder.chunks = [];
  // Stop had the focus (not the page: the recording may have stopped itself at its length)
  const hadFocus = document.activeElement === $("stop-btn");
  releaseMicrophone();
  if (hadFocus) {  // Stop, now disabled, had it: Record is the control again
    $("record-btn").disabled = false;
    $("record-btn").focus();
  }
  $("record-status").textContent = `Recorded ${seconds.toFixed(1)} s.`;
  const what = `the microphone's recording (${seconds.toFixed(1)} s)`;
  run(() => identify(wav, "microphone.wav", `The microphone (${seconds.toFixed(1)} s)`),
    $("record-btn"), `Identifying ${what}`);
}

// ---------------------------------------------------------------- 3. a phrase spoken by a voice

function describeVoice(v) {
  const traits = [v.gender, v.accent].filter(Boolean).join(", ");
  return traits ? `${v.id} (${traits})` : v.id;
}

async function loadVoices() {
  voicesLoaded = false;
  document.body.dataset.voices = "loading";
  const select = $("voice-select");
  try {
    const data = await (await api("/v1/voices")).json();
    const known = new Set(data.labels);
    const byId = new Map(data.synthesis.map((v) => [v.id, v]));
    // the model's voices, then one group per engine (in the server's order) of the others
    const groups = [
      ["Voices the model knows", data.labels.filter((id) => byId.has(id)).map((id) => byId.get(id))],
    ];
    const others = new Map();
    for (const v of data.synthesis.filter((v) => !known.has(v.id))) {
      if (!others.has(v.engine)) others.set(v.engine, []);
      others.get(v.engine).push(v);
    }
    for (const [engine, voices] of others) groups.push([`Other voices: ${engine}`, voices]);
    select.replaceChildren();
    for (const [label, voices] of groups) {
      if (!voices.length) continue;
      const group = document.createElement("optgroup");
      group.label = label;
      for (const v of voices) group.append(new Option(describeVoice(v), v.id));
      select.append(group);
    }
    select.disabled = select.options.length === 0;
    voicesLoaded = true;
    const count = data.labels.length;
    say($("model-info"), data.model === null
      ? "No classifier here: the enrolled voices answer (enroll one below, or POST /v1/enroll)."
      : [`Model "`, user(data.model), `" knows ${count} voice${count === 1 ? "" : "s"}: `,
        data.labels.map((label, i) => [i ? ", " : "", user(label)]), "."]);
    document.body.dataset.voices = "loaded";
  } catch (e) {
    select.replaceChildren(new Option("Voices unavailable", ""));
    select.disabled = true;
    $("model-info").textContent = "The model's voices could not be loaded.";
    showError(`Loading the voices failed: ${e.message}`);
    document.body.dataset.voices = "error";
  }
  $("speak-btn").disabled = !voicesLoaded || document.body.classList.contains("busy");
}

// what a voice that made no sound of a phrase most likely means, said beside the server's words
const SILENT_HINT = "this voice may not read this language or script; try another voice.";

async function speakAndIdentify() {
  try {
    await speakThenIdentify();
  } catch (e) {
    if (!(e instanceof ApiError && e.kind === "silent")) throw e;
    throw new ApiError(`${e.message} (${SILENT_HINT})`, e.kind);
  }
}

async function speakThenIdentify() {
  const text = $("phrase").value.trim();
  const voice = $("voice-select").value;
  if (!text) throw new ApiError("Type a phrase first.");
  if (!voice) throw new ApiError("Choose a voice first.");
  clearResult([user(voice), " is speaking the phrase…"]);
  const audio = $("audio");
  audio.pause();
  if (audio.src) URL.revokeObjectURL(audio.src);
  audio.removeAttribute("src"); // a refused phrase leaves no earlier one to play
  let mp3;
  try {
    const response = await api("/v1/synthesize", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ text, voice }),
    });
    mp3 = await response.blob();
  } catch (e) {
    clearResult();
    throw e;
  }
  audio.src = URL.createObjectURL(mp3);
  // playing is a courtesy: a browser that refuses autoplay still gets the identification
  audio.play().catch(() => {});
  await identify(mp3, "phrase.mp3", ['"', user(text), '" spoken by ', user(voice)]);
}

/** Say so when the browser cuts what is typed, pasted or dropped into the phrase box at its
 * maxlength (it does so without a word). */
function watchPhraseLength() {
  const box = $("phrase");
  const note = $("phrase-note");
  let cut = false;
  box.addEventListener("beforeinput", (e) => {
    const added = e.data ?? (e.dataTransfer ? e.dataTransfer.getData("text/plain") : "");
    const kept = box.value.length - (box.selectionEnd - box.selectionStart);
    cut = added.length > 0 && kept + added.length > box.maxLength;
    // said before the input event: at the limit, a key typed makes none
    if (cut) {
      note.textContent = `The phrase was cut to ${box.maxLength.toLocaleString("en")} `
        + "characters, the most a voice reads here.";
    }
  });
  box.addEventListener("input", () => {
    if (!cut) note.textContent = "";
  });
}

// ---------------------------------------------------------------- enrolled voices

/** The gallery's voices: the list (with a remove button each) and the verify choices. */
async function loadGallery() {
  const list = $("gallery-list");
  const select = $("verify-name");
  let voices = [];
  try {
    voices = (await (await api("/v1/gallery")).json()).voices;
  } catch (e) {
    // no encoder or no key: the panel stays empty, the error says why
    galleryVoices = 0;
    $("verify-btn").disabled = true;
    select.replaceChildren();
    document.body.dataset.gallery = "error";
    $("gallery-empty").textContent = `The gallery cannot be read: ${e.message}`;
    $("gallery-empty").hidden = false;
    list.replaceChildren();
    return;
  }
  const chosen = select.value;  // kept when the list is read again (after an enroll or a removal)
  list.replaceChildren();
  select.replaceChildren();
  for (const v of voices) {
    const item = document.createElement("li");
    item.dataset.name = v.name;
    const label = document.createElement("span");
    say(label, user(v.name), `: ${v.clips} clip${v.clips === 1 ? "" : "s"}, ${v.seconds.toFixed(1)} s`);
    const remove = document.createElement("button");
    remove.type = "button";
    remove.className = "button small";
    remove.textContent = "Remove";
    remove.setAttribute("aria-label", `Remove ${v.name}`);
    remove.disabled = document.body.classList.contains("busy");
    remove.addEventListener("click", () => run(async () => {
      // "." and ".." would be read as path steps by fetch: their dots go escaped
      const path = encodeURIComponent(v.name).replace(/^\.\.?$/, (d) => "%2E".repeat(d.length));
      await api(`/v1/gallery/${path}`, { method: "DELETE" });
      if ($("enroll-result").textContent.startsWith(`Enrolled ${v.name}:`)) {
        $("enroll-result").textContent = "";
      }
      await loadGallery();
      announce(`Removed ${v.name} from the gallery.`);
    }, $("gallery-list"), ["Removing ", user(v.name)]));
    item.append(label, remove);
    list.append(item);
    select.append(new Option(v.name, v.name, false, v.name === chosen));
  }
  $("gallery-empty").textContent = "Nothing enrolled yet.";
  $("gallery-empty").hidden = voices.length > 0;
  galleryVoices = voices.length;
  const answered = $("verify-result").dataset.name;
  if (answered !== undefined && !voices.some((v) => v.name === answered)) clearVerdict();
  $("verify-btn").disabled = voices.length === 0 || document.body.classList.contains("busy");
  document.body.dataset.gallery = String(voices.length);
}

async function enrollVoice() {
  $("enroll-result").textContent = "";  // no earlier enrollment's line beside this one's error
  const name = $("enroll-name").value.trim();
  const files = $("enroll-files").files;
  if (!name) throw new ApiError("Give the voice a name first.");
  if (!files.length) throw new ApiError("Choose one or more recordings first.");
  const status = $("enroll-result");
  say(status, "Enrolling ", user(name), "…");
  const form = new FormData();
  for (const f of files) form.append("file", f, f.name);
  let answer;
  try {
    answer = await (await api(`/v1/enroll?name=${encodeURIComponent(name)}`, {
      method: "POST", body: form,
    })).json();
  } catch (e) {
    status.textContent = "";
    throw e;
  }
  // each error already names its file
  const skipped = answer.skipped
    .map((s) => (s.error.startsWith(`${s.file}:`) ? s.error : `${s.file}: ${s.error}`))
    .join("; ");
  $("verify-result").textContent = "";
  await loadGallery();
  $("gallery-empty").hidden = true;
  $("enroll-files").value = "";
  const added = `${answer.added} clip${answer.added === 1 ? "" : "s"}`;
  say(status, "Enrolled ", user(answer.name), `: ${added} added, `,
    `${answer.clips} clip${answer.clips === 1 ? "" : "s"} and ${answer.seconds.toFixed(1)} s in all.`);
  if (skipped) showError(["Enrolled ", user(answer.name), `, but skipped ${skipped}`], $("enroll-btn"));
}

/** No verdict on screen: the voice it was about was removed, or another one is chosen. */
function clearVerdict() {
  const line = $("verify-result");
  line.textContent = "";
  line.dataset.accept = "";
  delete line.dataset.name;
}

async function verifyClaim() {
  const name = $("verify-name").value;
  const file = $("verify-file").files[0];
  const line = $("verify-result");
  clearVerdict();
  if (!name) throw new ApiError("Enroll a voice first.");
  if (!file) throw new ApiError("Choose a recording first.");
  const form = new FormData();
  form.append("file", file, file.name);
  say(line, "Comparing ", user(file.name), " with ", user(name), "…");
  let r;
  try {
    [r] = (await (await api(`/v1/verify?name=${encodeURIComponent(name)}`, {
      method: "POST", body: form,
    })).json()).results;
    if (r.error) throw new ApiError(r.error);
  } catch (e) {
    line.textContent = "";
    throw e;
  }
  line.dataset.accept = String(r.accept);
  line.dataset.name = name;
  say(line, r.accept ? "Yes: " : "No: not ", user(name), r.accept
    ? ` (score ${r.score.toFixed(2)} ≥ ${r.threshold.toFixed(2)}, p ${percent(r.probability)}).`
    : ` (score ${r.score.toFixed(2)} < ${r.threshold.toFixed(2)}, p ${percent(r.probability)}).`);
}

// ---------------------------------------------------------------- who speaks when

// Okabe and Ito's eight colours, told apart with the common colour-vision deficiencies; each
// with the text colour it is read in (4.5:1 or more: drawn without opacity). The ninth voice on
// takes them again under a hatching of its own (a different angle each round). Colour is
// never the only mark: every voice has a letter (A, B, ...) that each of its turns begins with
// and the legend repeats (two of these colours are 1.02:1 apart in lightness, and a turn's
// name is cut where the turn is short).
const PALETTE = [["#0072b2", "#fff"], ["#e69f00", "#000"], ["#009e73", "#000"],
  ["#cc79a7", "#000"], ["#56b4e9", "#000"], ["#d55e00", "#000"], ["#f0e442", "#000"],
  ["#5f5f5f", "#fff"]];
const HATCHES = ["", "45deg", "-45deg", "0deg", "90deg"];
const TURN_MIN_PX = 24;  // a turn's least width, as a target (WCAG 2.5.8)
const talk = { url: null, stopAt: null, styles: new Map(), total: 0, captioned: null };

/** A, B, ..., Z, AA, AB, ...: the ``k``-th voice's letter. */
function letterOf(k) {
  let letters = "";
  for (let n = k + 1; n > 0; n = Math.floor((n - 1) / 26)) {
    letters = String.fromCharCode(65 + ((n - 1) % 26)) + letters;
  }
  return letters;
}

/** The look of a voice: {background, backgroundImage, color, letter}, the same all along a
 * timeline. */
function styleOf(speaker) {
  if (!talk.styles.has(speaker)) {
    const k = talk.styles.size;
    const [background, color] = PALETTE[k % PALETTE.length];
    const angle = HATCHES[Math.floor(k / PALETTE.length) % HATCHES.length];
    // stripes of the text's opposite, so the name on the turn stays readable
    const stripe = color === "#fff" ? "rgba(0,0,0,0.45)" : "rgba(255,255,255,0.6)";
    const backgroundImage = angle
      ? `repeating-linear-gradient(${angle}, transparent 0 5px, ${stripe} 5px 8px)`
      : "none";
    talk.styles.set(speaker, { background, backgroundImage, color, letter: letterOf(k) });
  }
  return talk.styles.get(speaker);
}

function colourOf(speaker) {
  return styleOf(speaker).background;
}

/** A span of ``speaker``'s letter (its colours set by the caller: the turn's reversed on a
 * turn, the turn's own in the legend). */
function letterBadge(speaker, className) {
  const look = styleOf(speaker);
  const badge = document.createElement("span");
  badge.className = className;
  badge.textContent = look.letter;
  return badge;
}

/** Places the timeline's turns: across from their times, each at least TURN_MIN_PX wide (and
 * as wide as its letter) and inside the box; a turn that would cover another (an overlapped
 * one, or a short one widened) goes to the first row below that is free there. Rows are
 * filled by the turns spoken alone first, so overlapped speech is drawn under them. Run again
 * when the page's width changes (the rows depend on it). */
function layOutTimeline() {
  const line = $("timeline");
  const width = line.clientWidth;
  if (!width || !talk.total) return;
  const turns = [...line.querySelectorAll(".turn")];
  const order = [...turns.filter((t) => !t.classList.contains("overlap")),
    ...turns.filter((t) => t.classList.contains("overlap"))];
  const rows = [];  // the [left, right] of each turn in each row, px
  for (const turn of order) {
    const start = Number(turn.dataset.start);
    const end = Number(turn.dataset.end);
    const least = Math.max(TURN_MIN_PX,
      turn.querySelector(".tag").offsetWidth + turn.offsetWidth - turn.clientWidth + 6);
    const w = Math.min(width, Math.max(least, (width * (end - start)) / talk.total));
    const left = Math.max(0, Math.min((width * start) / talk.total, width - w));
    const free = (placed) => placed.every(([a, b]) => left >= b - 0.5 || left + w <= a + 0.5);
    let row = rows.findIndex(free);
    if (row < 0) row = rows.push([]) - 1;
    rows[row].push([left, left + w]);
    turn.style.left = `${left}px`;
    turn.style.width = `${w}px`;
    turn.style.setProperty("--row", String(row));
  }
  line.style.setProperty("--rows", String(Math.max(rows.length, 1)));
}

/** The turns of a POST /v1/diarize answer as a timeline, a legend, and the audio to play. */
function showTimeline(answer, blob) {
  const line = $("timeline");
  const legend = $("timeline-legend");
  talk.styles = new Map();
  talk.total = Math.max(answer.duration_s, 0.001);
  line.replaceChildren();
  legend.replaceChildren();
  // letters in the legend's order (the server's), whatever order the turns come in
  for (const name of Object.keys(answer.speakers)) styleOf(name);
  for (const s of answer.segments) {
    const turn = document.createElement("button");
    turn.type = "button";
    turn.className = "turn" + (s.overlap ? " overlap" : "");
    turn.dataset.speaker = s.speaker;
    turn.dataset.start = String(s.start);
    turn.dataset.end = String(s.end);
    const look = styleOf(s.speaker);
    Object.assign(turn.style, {
      background: look.background, backgroundImage: look.backgroundImage, color: look.color,
    });
    const tag = letterBadge(s.speaker, "tag");
    Object.assign(tag.style, { background: look.color, color: look.background });
    const name = document.createElement("bdi");
    name.className = "turn-name";
    name.textContent = s.speaker;  // cut short where the turn is narrow: the letter is not
    turn.append(tag, " ", name);  // the space: read "A awb", not "Aawb"
    const when = `${s.start.toFixed(1)}–${s.end.toFixed(1)} s${s.overlap ? " (overlapped)" : ""}`;
    // the letter first, as drawn: what a voice control's user reads off the turn is its name
    const said = [`${look.letter} `, user(s.speaker), `: ${when}`];
    turn.title = plain(said);  // isolated: a tooltip is drawn in reading order
    turn.setAttribute("aria-label", words(["Play ", said]));
    turn.addEventListener("click", () => playTurn(s.start, s.end));
    // the title shows on a mouse's hover only: a focused or touched turn says it under the line
    for (const type of ["focus", "mouseenter"]) {
      turn.addEventListener(type, () => {
        say($("turn-caption"), said);
        talk.captioned = turn;
      });
    }
    for (const type of ["blur", "mouseleave"]) {
      turn.addEventListener(type, () => {
        if (talk.captioned === turn) $("turn-caption").replaceChildren();
      });
    }
    const item = document.createElement("div");
    item.setAttribute("role", "listitem");
    item.className = "turn-item";
    item.append(turn);
    line.append(item);
  }
  for (const [name, info] of Object.entries(answer.speakers)) {
    const item = document.createElement("li");
    item.dataset.speaker = name;
    const look = styleOf(name);
    const swatch = letterBadge(name, "swatch");
    Object.assign(swatch.style, {
      background: look.background, backgroundImage: look.backgroundImage, color: look.color,
    });
    const label = document.createElement("span");
    say(label, user(name), `${info.enrolled ? " (enrolled)" : ""}: ${info.speech_s.toFixed(1)} s`);
    item.append(swatch, label);
    legend.append(item);
  }
  line.hidden = answer.segments.length === 0;
  layOutTimeline();
  const empty = $("timeline-empty");
  empty.hidden = answer.segments.length > 0;
  empty.textContent = answer.segments.length ? "" :
    `No speech found in this recording (${answer.duration_s.toFixed(1)} s): no one to place on a timeline.`;
  const names = Object.entries(answer.speakers)
    .map(([name, info], i) => [i ? ", " : "", user(name), info.enrolled ? " (enrolled)" : ""]);
  const turns = answer.segments.length;
  say($("talk-status"), turns
    ? [`${turns} turn${turns === 1 ? "" : "s"}, ${names.length} voice${names.length === 1 ? "" : "s"}: `, names, "."]
    : empty.textContent);
  $("turn-caption").replaceChildren();
  if (talk.url) URL.revokeObjectURL(talk.url);
  talk.url = URL.createObjectURL(blob);
  const audio = $("talk-audio");
  audio.src = talk.url;
  audio.hidden = false;
  document.body.dataset.diarized = String(answer.segments.length);
}

function playTurn(start, end) {
  const audio = $("talk-audio");
  talk.stopAt = end;
  audio.currentTime = start;
  audio.play().catch(() => {});  // a browser may refuse to play before a gesture: no error
  document.body.dataset.playing = String(start);
}

function clearTimeline(working = "") {
  say($("talk-status"), working);
  $("turn-caption").textContent = "";
  $("timeline").replaceChildren();
  $("timeline").hidden = true;
  $("timeline-empty").hidden = true;
  $("timeline-legend").replaceChildren();
  const audio = $("talk-audio");
  audio.pause();
  audio.removeAttribute("src");
  audio.hidden = true;
  delete document.body.dataset.diarized;
}

async function diarizeFile(file) {
  // a failed request leaves no earlier timeline under its error
  clearTimeline(["Finding who speaks when in ", user(file.name), "…"]);
  const form = new FormData();
  form.append("file", file, file.name);
  let answer;
  try {
    answer = await (await api("/v1/diarize", { method: "POST", body: form })).json();
  } catch (e) {
    $("talk-status").textContent = "";
    throw e;
  }
  showTimeline(answer, file);
}

// live: the microphone's audio, 16-bit PCM at the microphone's own rate in small binary messages over a WebSocket;
// the server answers {"speaker", "score", "t"} at least twice a second
const live = { socket: null, context: null, stream: null, node: null };
const LIVE_BLOCK = 4096; // samples a message: about 85 ms at 48 kHz
// what a closed stream without a reason of its own means to the person at the page
const CLOSE_REASONS = {
  1001: "the server is going away (restarting or shutting down)",
  1006: "the connection was lost",
  1011: "the server failed; try again",
  1012: "the server is restarting or shutting down; try again in a moment",
  1013: "the server is busy; try again later",
};

async function startLive() {
  if (live.socket) return;
  $("live-now").hidden = true;
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    throw new ApiError("This browser gives no microphone here: open the page over https or on localhost.");
  }
  let stream;
  try {
    // the same raw sound as Record (and as the published live figures): no echo
    // cancelling, noise suppression or gain riding by the browser
    stream = await navigator.mediaDevices.getUserMedia({
      audio: { channelCount: 1, echoCancellation: false, noiseSuppression: false, autoGainControl: false },
    });
  } catch (e) {
    const why = e.name === "NotAllowedError" ? "permission was refused" : e.message;
    throw new ApiError(`The microphone cannot be used: ${why}.`);
  }
  const context = new AudioContext();
  let node;
  try {
    // the audio thread hands over its 128-sample blocks (as Record's capture does; the
    // ScriptProcessorNode this replaced is deprecated and ran on the page's thread)
    node = await captureNode(context);
    // running before the socket exists: a socket that closes at once closes the context,
    // and a resume still pending then would fail over the close's own reason
    await context.resume();
  } catch (e) {
    stream.getTracks().forEach((t) => t.stop());
    context.close();
    throw new ApiError(`The microphone cannot be used: ${e.message}.`);
  }
  const source = context.createMediaStreamSource(stream);
  const proto = location.protocol === "https:" ? "wss" : "ws";
  const key = $("api-key").value.trim();
  const query = new URLSearchParams({ rate: String(context.sampleRate) });
  if (key) query.set("key", key);
  const socket = new WebSocket(`${proto}://${location.host}/v1/stream?${query}`);
  socket.binaryType = "arraybuffer";
  Object.assign(live, { socket, context, stream, node });
  $("live-btn").disabled = true;
  $("live-stop-btn").disabled = false;
  $("live-status").textContent = "Live: connecting…";
  socket.addEventListener("open", () => {
    $("live-status").textContent = "Live: listening.";
    document.body.dataset.live = "on";
  });
  let told = false; // the server sent its reason as a message
  socket.addEventListener("message", (e) => {
    const m = JSON.parse(e.data);
    if (m.error) {
      showError(`Live: ${m.error}`, $("live-btn"));
      document.body.dataset.state = "error";
      told = true;
      return;
    }
    const now = $("live-now");
    now.hidden = false;
    const said = m.speaker ? ["Speaking now: ", user(m.speaker)]
      : m.speech ? "Someone is speaking (not recognised yet)." : "Nobody is speaking.";
    // a live region: rewritten only when it changes (ten answers a second said the same)
    if (now.textContent !== words(said)) say(now, said);
    now.style.borderColor = m.speaker ? colourOf(m.speaker) : "";
    document.body.dataset.liveSpeaker = m.speaker || "";
  });
  socket.addEventListener("close", (e) => {
    if (live.socket !== socket) return; // stopped here: nothing to report
    if (e.code === 1000) {
      stopLive(`Live: off${e.reason ? ` (${e.reason})` : ""}.`);
      return;
    }
    if (!told) {
      let why = e.reason || CLOSE_REASONS[e.code] || `closed (code ${e.code})`;
      if (e.code === 1008) why += ` (${keyHint()})`;
      showError(`Live: ${why}`, $("live-btn"));
      document.body.dataset.state = "error";
    }
    stopLive("Live: off.");
  });
  // sent in messages of LIVE_BLOCK samples (16-bit), as the page sent them before
  let pcm = new Int16Array(LIVE_BLOCK);
  let filled = 0;
  node.port.onmessage = (e) => {
    if (socket.readyState !== WebSocket.OPEN) return;
    for (const x of e.data) {
      pcm[filled++] = Math.max(-1, Math.min(1, x)) * 32767;
      if (filled === LIVE_BLOCK) {
        socket.send(pcm.buffer);
        pcm = new Int16Array(LIVE_BLOCK);
        filled = 0;
      }
    }
  };
  source.connect(node);
}

function stopLive(status = "Live: off.") {
  // Stop, disabled below, may hold the keyboard focus: Live takes it back
  const hadFocus = document.activeElement === $("live-stop-btn");
  if (live.node) live.node.disconnect();
  if (live.stream) live.stream.getTracks().forEach((t) => t.stop());
  if (live.context) live.context.close();
  if (live.socket && live.socket.readyState <= WebSocket.OPEN) live.socket.close();
  Object.assign(live, { socket: null, context: null, stream: null, node: null });
  $("live-btn").disabled = document.body.classList.contains("busy");
  $("live-stop-btn").disabled = true;
  if (hadFocus && !$("live-btn").disabled) $("live-btn").focus();
  $("live-status").textContent = status;
  $("live-now").hidden = true;
  document.body.dataset.live = "off";
}

// ---------------------------------------------------------------- start

function setUp() {
  const key = $("api-key");
  key.value = localStorage.getItem(KEY_STORAGE) || "";
  key.addEventListener("change", () => {
    const value = key.value.trim();
    if (value) localStorage.setItem(KEY_STORAGE, value);
    else localStorage.removeItem(KEY_STORAGE);
    clearError();
    loadVoices();
    loadGallery();
  });
  setUpFile();
  $("record-btn").addEventListener("click", startRecording);
  $("stop-btn").addEventListener("click", stopRecording);
  $("speak-btn").addEventListener("click", () => run(speakAndIdentify, $("speak-btn"),
    "Speaking and identifying the phrase"));
  watchPhraseLength();
  $("phrase").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !$("speak-btn").disabled) $("speak-btn").click();
  });
  $("enroll-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const name = $("enroll-name").value.trim();
    run(enrollVoice, $("enroll-btn"), name ? ["Enrolling ", user(name)] : "Enrolling");
  });
  $("verify-form").addEventListener("submit", (e) => {
    e.preventDefault();
    run(verifyClaim, $("verify-btn"), "Verifying");
  });
  $("verify-name").addEventListener("change", clearVerdict);
  $("diarize-file").addEventListener("change", () => {
    const file = $("diarize-file").files[0];
    $("diarize-file").value = ""; // so that choosing the same file again (after enrolling) asks again
    if (file) run(() => diarizeFile(file), $("diarize-file"), ["Finding who speaks when in ", user(file.name)]);
  });
  $("talk-audio").addEventListener("timeupdate", () => {
    const audio = $("talk-audio");
    if (talk.stopAt !== null && audio.currentTime >= talk.stopAt) {
      audio.pause();
      talk.stopAt = null;
    }
  });
  $("live-btn").addEventListener("click", () => run(startLive, $("live-btn"), "Live"));
  window.addEventListener("resize", layOutTimeline);
  $("live-stop-btn").addEventListener("click", () => stopLive());
  loadVoices();
  loadGallery();
}

setUp();
