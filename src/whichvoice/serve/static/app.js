// The page behind whichvoice's server: a file, the microphone or a synthesized phrase ->
// POST /v1/identify -> the voice, a bar per voice and the spectrogram.
// document.body.dataset.state is "busy" while a request runs, then "done" or "error".
"use strict";

const KEY_STORAGE = "whichvoice.apiKey";
const MAX_RECORD_S = 15; // s of microphone audio, then recording stops by itself

const $ = (id) => document.getElementById(id);

const recorder = { stream: null, context: null, chunks: [], samples: 0, timer: null };
let voicesLoaded = false; // the voice <select> is filled
let galleryVoices = 0; // voices enrolled, as the gallery list last showed them

// ---------------------------------------------------------------- API calls

class ApiError extends Error {}

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
  try {
    const body = await response.json();
    if (body && body.error) message = body.error;
  } catch (e) {
    // not JSON: the status line says enough
  }
  if (response.status === 401) message += ` (${keyHint()})`;
  throw new ApiError(`${message} [HTTP ${response.status}]`);
}

// ---------------------------------------------------------------- state and errors

/** The error, in the card of the control ``near`` (where the user is looking), else in its
 * place above the result; scrolled into view. */
function showError(message, near = null) {
  const box = $("error");
  const card = near && near.closest ? near.closest(".card") : null;
  const home = card || $("error-home");
  if (box.parentElement !== home) home.append(box);
  box.textContent = message;
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

/** Run one user action: busy while it runs, then state "done" or "error" (shown). */
async function run(action) {
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
    showError(e instanceof ApiError ? e.message : `Something went wrong: ${e.message}`, focused);
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

/** No answer on screen; ``working`` says what is being done meanwhile (the result region is
 * live: it is what a screen reader hears while the request runs). */
function clearResult(working = "Nothing identified yet.") {
  $("result-body").hidden = true;
  $("result-empty").hidden = false;
  $("result-empty").textContent = working;
  delete document.body.dataset.answer;
  delete document.body.dataset.engine;
}

async function identify(blob, filename, source) {
  // a failed request leaves no earlier answer under its error
  clearResult(`Identifying ${source}…`);
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
  const windows = `${result.windows} window${result.windows === 1 ? "" : "s"}`;
  let meta = `${source}: ${result.duration_s.toFixed(2)} s of audio`;
  meta += byScore ? ", compared with the enrolled voices." : `, ${windows} scored.`;
  if (classifier && result.answer_source !== "classifier") {
    const why = classifier.known === false
      ? ` (open-set score ${classifier.openset_score.toFixed(2)} < ${classifier.openset_threshold.toFixed(2)})`
      : "";
    meta += ` Classifier: nearest ${classifier.voice}${why}.`;
  }
  if (gallery && result.answer_source !== "gallery") {
    meta += ` Enrolled voices: nearest ${gallery.nearest} (score ${gallery.score.toFixed(2)} < ${gallery.threshold.toFixed(2)}).`;
  }
  $("result-meta").textContent = meta;
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
    name.textContent = voice;
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
  run(() => identify(file, file.name, file.name));
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
    showError("This browser gives no microphone here: open the page over https or on localhost.");
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
  run(() => identify(wav, "microphone.wav", `The microphone (${seconds.toFixed(1)} s)`));
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
    $("model-info").textContent = data.model === null
      ? "No classifier here: the enrolled voices answer (enroll one below, or POST /v1/enroll)."
      : `Model "${data.model}" knows ${count} voice${count === 1 ? "" : "s"}: ${data.labels.join(", ")}.`;
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

async function speakAndIdentify() {
  const text = $("phrase").value.trim();
  const voice = $("voice-select").value;
  if (!text) throw new ApiError("Type a phrase first.");
  if (!voice) throw new ApiError("Choose a voice first.");
  clearResult(`${voice} is speaking the phrase…`);
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
  await identify(mp3, "phrase.mp3", `"${text}" spoken by ${voice}`);
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
    label.textContent = `${v.name}: ${v.clips} clip${v.clips === 1 ? "" : "s"}, ${v.seconds.toFixed(1)} s`;
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
    }));
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
  status.textContent = `Enrolling ${name}…`;
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
  status.textContent = `Enrolled ${answer.name}: ${added} added, ` +
    `${answer.clips} clip${answer.clips === 1 ? "" : "s"} and ${answer.seconds.toFixed(1)} s in all.`;
  if (skipped) showError(`Enrolled ${answer.name}, but skipped ${skipped}`, $("enroll-btn"));
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
  line.textContent = `Comparing ${file.name} with ${name}…`;
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
  line.textContent = r.accept
    ? `Yes: ${name} (score ${r.score.toFixed(2)} ≥ ${r.threshold.toFixed(2)}, p ${percent(r.probability)}).`
    : `No: not ${name} (score ${r.score.toFixed(2)} < ${r.threshold.toFixed(2)}, p ${percent(r.probability)}).`;
}

// ---------------------------------------------------------------- who speaks when

// Okabe and Ito's eight colours, told apart with the common colour-vision deficiencies; each
// with the text colour it is read in. The ninth voice on takes them again under a hatching of
// its own (a different angle each round), so no two voices look alike; and every turn carries
// its voice's name, so colour is never the only mark.
const PALETTE = [["#0072b2", "#fff"], ["#e69f00", "#000"], ["#009e73", "#000"],
  ["#cc79a7", "#000"], ["#56b4e9", "#000"], ["#d55e00", "#000"], ["#f0e442", "#000"],
  ["#5f5f5f", "#fff"]];
const HATCHES = ["", "45deg", "-45deg", "0deg", "90deg"];
const talk = { url: null, stopAt: null, styles: new Map() };

/** The look of a voice: {background, backgroundImage, color}, the same all along a timeline. */
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
    talk.styles.set(speaker, { background, backgroundImage, color });
  }
  return talk.styles.get(speaker);
}

function colourOf(speaker) {
  return styleOf(speaker).background;
}

/** The turns of a POST /v1/diarize answer as a timeline, a legend, and the audio to play. */
function showTimeline(answer, blob) {
  const line = $("timeline");
  const legend = $("timeline-legend");
  talk.styles = new Map();
  line.replaceChildren();
  legend.replaceChildren();
  const total = Math.max(answer.duration_s, 0.001);
  for (const s of answer.segments) {
    const turn = document.createElement("button");
    turn.type = "button";
    turn.className = "turn" + (s.overlap ? " overlap" : "");
    turn.dataset.speaker = s.speaker;
    turn.dataset.start = String(s.start);
    turn.style.left = `${(100 * s.start) / total}%`;
    turn.style.width = `${Math.max((100 * (s.end - s.start)) / total, 0.4)}%`;
    Object.assign(turn.style, styleOf(s.speaker));
    turn.textContent = s.speaker;  // shown where the turn is wide enough, cut short else
    turn.title = `${s.speaker}: ${s.start.toFixed(1)}–${s.end.toFixed(1)} s` +
      (s.overlap ? " (overlapped)" : "");
    turn.setAttribute("aria-label", `Play ${turn.title}`);
    turn.addEventListener("click", () => playTurn(s.start, s.end));
    // the title shows on a mouse's hover only: a focused or touched turn says it under the line
    for (const type of ["focus", "mouseenter"]) {
      turn.addEventListener(type, () => { $("turn-caption").textContent = turn.title; });
    }
    for (const type of ["blur", "mouseleave"]) {
      turn.addEventListener(type, () => {
        if ($("turn-caption").textContent === turn.title) $("turn-caption").textContent = "";
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
    const swatch = document.createElement("span");
    swatch.className = "swatch";
    const look = styleOf(name);
    swatch.style.background = look.background;
    swatch.style.backgroundImage = look.backgroundImage;
    const label = document.createElement("span");
    label.textContent = `${name}${info.enrolled ? " (enrolled)" : ""}: ${info.speech_s.toFixed(1)} s`;
    item.append(swatch, label);
    legend.append(item);
  }
  line.hidden = answer.segments.length === 0;
  const empty = $("timeline-empty");
  empty.hidden = answer.segments.length > 0;
  empty.textContent = answer.segments.length ? "" :
    `No speech found in this recording (${answer.duration_s.toFixed(1)} s): no one to place on a timeline.`;
  const names = Object.entries(answer.speakers)
    .map(([name, info]) => `${name}${info.enrolled ? " (enrolled)" : ""}`);
  const turns = answer.segments.length;
  $("talk-status").textContent = turns
    ? `${turns} turn${turns === 1 ? "" : "s"}, ${names.length} voice${names.length === 1 ? "" : "s"}: ${names.join(", ")}.`
    : empty.textContent;
  $("turn-caption").textContent = "";
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
  $("talk-status").textContent = working;
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
  clearTimeline(`Finding who speaks when in ${file.name}…`);
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
    const said = m.speaker ? `Speaking now: ${m.speaker}`
      : m.speech ? "Someone is speaking (not recognised yet)." : "Nobody is speaking.";
    // a live region: rewritten only when it changes (ten answers a second said the same)
    if (now.textContent !== said) now.textContent = said;
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
  $("speak-btn").addEventListener("click", () => run(speakAndIdentify));
  $("phrase").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !$("speak-btn").disabled) $("speak-btn").click();
  });
  $("enroll-form").addEventListener("submit", (e) => { e.preventDefault(); run(enrollVoice); });
  $("verify-form").addEventListener("submit", (e) => { e.preventDefault(); run(verifyClaim); });
  $("verify-name").addEventListener("change", clearVerdict);
  $("diarize-file").addEventListener("change", () => {
    const file = $("diarize-file").files[0];
    $("diarize-file").value = ""; // so that choosing the same file again (after enrolling) asks again
    if (file) run(() => diarizeFile(file));
  });
  $("talk-audio").addEventListener("timeupdate", () => {
    const audio = $("talk-audio");
    if (talk.stopAt !== null && audio.currentTime >= talk.stopAt) {
      audio.pause();
      talk.stopAt = null;
    }
  });
  $("live-btn").addEventListener("click", () => run(startLive));
  $("live-stop-btn").addEventListener("click", () => stopLive());
  loadVoices();
  loadGallery();
}

setUp();
