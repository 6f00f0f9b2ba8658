// The serial page: xterm.js on the proxy's websocket, the console's bytes
// both ways. The terminal fills the window and follows its size;
// Ctrl+Shift+C copies the selection, Ctrl+Shift+V (or the browser's
// paste) pastes.
import { Terminal } from '../vendor/xterm/lib/xterm.mjs';
import { FitAddon } from '../vendor/xterm-addon-fit/lib/addon-fit.mjs';
import * as page from './common.js';

// A view-only page takes no keys (the proxy would drop them anyway).
const term = new Terminal({convertEol: false, cursorBlink: true, scrollback: 5000, disableStdin: page.viewOnly});
const fit = new FitAddon();
term.loadAddon(fit);
term.open(document.getElementById('screen'));
fit.fit();
window.addEventListener('resize', () => fit.fit());
window.term = term;

const encoder = new TextEncoder();
let ws = null;

function send(data) {
  if (ws && ws.readyState === WebSocket.OPEN) {
    ws.send(typeof data === 'string' ? encoder.encode(data) : data);
  }
}

term.onData(send);
term.onBinary(s => send(Uint8Array.from(s, c => c.charCodeAt(0))));
term.attachCustomKeyEventHandler(e => {
  if (e.type !== 'keydown' || !e.ctrlKey || !e.shiftKey) {
    return true;
  }
  if (e.code === 'KeyC' && term.hasSelection()) {
    navigator.clipboard.writeText(term.getSelection());
    return false;
  }
  if (e.code === 'KeyV') {
    navigator.clipboard.readText().then(t => term.paste(t));
    return false;
  }
  return true;
});

function connect() {
  let opened = false;
  ws = new WebSocket(page.wsURL(), 'binary');
  ws.binaryType = 'arraybuffer';
  ws.onopen = () => {
    opened = true;
    page.state.connects++;
    page.clearToken();
    page.show('connected', '', false);
    term.focus();
  };
  ws.onmessage = e => term.write(new Uint8Array(e.data));
  ws.onclose = e => {
    page.clearToken();
    if (!opened) {
      page.refused();
    } else {
      page.show('disconnected', e.reason || 'the session ended', true);
    }
  };
}

page.start(connect);
