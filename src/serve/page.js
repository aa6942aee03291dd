// The chat page of `grok serve`: talks to /v1/chat/completions with streaming,
// keeps the conversation and settings in localStorage, renders replies as a
// small markdown subset. Safety: all model text is HTML-escaped first; the
// markdown pass only wraps escaped text in fixed tags without attributes, so a
// reply can never add an element, attribute, script or handler of its own. The
// server's Content-Security-Policy forbids inline scripts as a second wall.
'use strict';

const $ = (id) => document.getElementById(id);
const STORE = 'grokc-chat-v1';
let state = { messages: [], settings: { system: '', temperature: 0.8, max_tokens: 256, api_key: '' } };
let controller = null;

function load() {
  try {
    const s = JSON.parse(localStorage.getItem(STORE) || 'null');
    if (s && Array.isArray(s.messages)) {
      state.messages = s.messages.filter((m) => m && typeof m.content === 'string' &&
        (m.role === 'user' || m.role === 'assistant'));
      Object.assign(state.settings, s.settings || {});
    }
  } catch (e) { /* a damaged store starts afresh */ }
}
function save() { localStorage.setItem(STORE, JSON.stringify(state)); }

function escapeHtml(s) {
  return s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }[c]));
}

// Inline markup on escaped text: `code`, **bold**, *italic*.
function inline(s) {
  return s.split(/(`[^`\n]+`)/).map((part, i) => {
    if (i % 2) return '<code>' + part.slice(1, -1) + '</code>';
    return part.replace(/\*\*([^*\n]+)\*\*/g, '<strong>$1</strong>')
               .replace(/\*([^*\n]+)\*/g, '<em>$1</em>');
  }).join('');
}

function blocks(s) {
  let html = '';
  for (const para of s.split(/\n{2,}/)) {
    if (!para.trim()) continue;
    const lines = para.split('\n');
    if (lines.every((l) => /^\s*[-*] /.test(l))) {
      html += '<ul>' + lines.map((l) => '<li>' + inline(l.replace(/^\s*[-*] /, '')) + '</li>').join('') + '</ul>';
    } else if (lines.length === 1 && /^#{1,4} /.test(para)) {
      html += '<h4>' + inline(para.replace(/^#+ /, '')) + '</h4>';
    } else {
      html += '<p>' + lines.map(inline).join('<br>') + '</p>';
    }
  }
  return html;
}

function renderMarkdown(text) {
  const esc = escapeHtml(text);
  let html = '';
  const re = /```[^\n]*\n([\s\S]*?)(?:```|$)/g;
  let last = 0, m;
  while ((m = re.exec(esc)) !== null) {
    html += blocks(esc.slice(last, m.index)) + '<pre><code>' + m[1] + '</code></pre>';
    last = re.lastIndex;
    if (m[0].length === 0) break;
  }
  return html + blocks(esc.slice(last));
}

function bubble(role, text) {
  const div = document.createElement('div');
  div.className = 'msg ' + role;
  const r = document.createElement('div');
  r.className = 'role';
  r.textContent = role;
  const body = document.createElement('div');
  body.className = 'body';
  div.append(r, body);
  setText(div, role, text);
  $('log').append(div);
  $('log').scrollTop = $('log').scrollHeight;
  return div;
}
function setText(div, role, text) {
  const body = div.querySelector('.body');
  if (role === 'assistant') body.innerHTML = renderMarkdown(text);
  else body.textContent = text;
}

function renderAll() {
  $('log').replaceChildren();
  for (const m of state.messages) bubble(m.role, m.content);
}

function headers() {
  const h = { 'Content-Type': 'application/json' };
  if (state.settings.api_key) h.Authorization = 'Bearer ' + state.settings.api_key;
  return h;
}

function setBusy(busy) {
  $('send').disabled = busy;
  $('stop').disabled = !busy;
  document.body.dataset.busy = busy ? '1' : '';
}

async function send(text) {
  state.messages.push({ role: 'user', content: text });
  save();
  bubble('user', text);
  const div = bubble('assistant', '');
  let reply = '';
  const msgs = [];
  if (state.settings.system.trim()) msgs.push({ role: 'system', content: state.settings.system });
  for (const m of state.messages) msgs.push({ role: m.role, content: m.content });
  controller = new AbortController();
  setBusy(true);
  $('status').textContent = 'generating…';
  const t0 = performance.now();
  let n = 0, error = null;
  try {
    const res = await fetch('/v1/chat/completions', {
      method: 'POST', headers: headers(), signal: controller.signal,
      body: JSON.stringify({
        model: 'grok', messages: msgs, stream: true,
        temperature: Number(state.settings.temperature),
        max_tokens: Number(state.settings.max_tokens),
      }),
    });
    if (!res.ok) {
      let msg = res.status + ' ' + res.statusText;
      try { msg = (await res.json()).error.message; } catch (e) { /* not JSON */ }
      throw new Error(msg);
    }
    const reader = res.body.getReader();
    const dec = new TextDecoder();
    let buf = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += dec.decode(value, { stream: true });
      let k;
      while ((k = buf.indexOf('\n\n')) >= 0) {
        const ev = buf.slice(0, k);
        buf = buf.slice(k + 2);
        for (const line of ev.split('\n')) {
          if (!line.startsWith('data: ')) continue;
          const data = line.slice(6);
          if (data === '[DONE]') continue;
          const obj = JSON.parse(data);
          if (obj.error) throw new Error(obj.error.message);
          const d = obj.choices && obj.choices[0] && obj.choices[0].delta;
          if (d && typeof d.content === 'string' && d.content) {
            reply += d.content;
            n++;
            setText(div, 'assistant', reply);
            $('log').scrollTop = $('log').scrollHeight;
          }
        }
      }
    }
  } catch (e) {
    if (e.name !== 'AbortError') error = e.message;
  }
  controller = null;
  setBusy(false);
  const dt = (performance.now() - t0) / 1000;
  $('status').textContent = error ? '' : `${n} chunks in ${dt.toFixed(1)} s`;
  if (error) {
    div.className = 'msg error';
    setText(div, 'error', 'error: ' + error);
  }
  state.messages.push({ role: 'assistant', content: reply });
  save();
}

function init() {
  load();
  const s = state.settings;
  $('system').value = s.system;
  $('temperature').value = s.temperature;
  $('max-tokens').value = s.max_tokens;
  $('api-key').value = s.api_key;
  const bind = (id, key) => $(id).addEventListener('change', () => { s[key] = $(id).value; save(); });
  bind('system', 'system');
  bind('temperature', 'temperature');
  bind('max-tokens', 'max_tokens');
  bind('api-key', 'api_key');
  $('toggle-settings').addEventListener('click', () => { $('settings').hidden = !$('settings').hidden; });
  $('new').addEventListener('click', () => {
    if (controller) controller.abort();
    state.messages = [];
    save();
    renderAll();
  });
  $('stop').addEventListener('click', () => { if (controller) controller.abort(); });
  $('form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const text = $('input').value;
    if (!text.trim() || controller) return;
    $('input').value = '';
    send(text);
  });
  $('input').addEventListener('keydown', (ev) => {
    if (ev.key === 'Enter' && !ev.shiftKey) {
      ev.preventDefault();
      $('form').requestSubmit();
    }
  });
  renderAll();
  setBusy(false);
  fetch('/v1/models', { headers: headers() }).then((r) => r.json())
    .then((j) => { $('model').textContent = j.data[0].id; }).catch(() => {});
}

init();
