// Shared by the console pages: the token from the link's fragment, the
// websocket URL beside the page, the token cookie the proxy reads, and the
// status bar (state, refusal reason, reconnect).
//
// The token comes in the fragment (#token=…), which the browser never
// sends, and goes to the proxy only as a cookie on the websocket's path:
// it is in no URL a server sees. The fragment is removed from the address
// bar once read; the token stays in memory for reconnecting.

const params = new URLSearchParams(location.hash.slice(1));
export const token = params.get('token') || '';
// role=view (in the fragment too) asks the proxy for a view-only session:
// it goes as the role cookie beside the token's. A token's own role can
// only be lowered.
const role = params.get('role') || '';
export const viewOnly = role === 'view';
if (location.hash) {
  history.replaceState(null, '', location.pathname + location.search);
}

// state is what the tests and the status bar read.
// violations lists what the Content-Security-Policy blocked (none is
// expected: a change that needs more shows up here).
export const state = {state: 'starting', reason: '', connects: 0, violations: []};
window.consoleState = state;
document.addEventListener('securitypolicyviolation', e => {
  state.violations.push(e.effectiveDirective + ' ' + e.blockedURI);
});

// wsURL is the proxy's websocket endpoint beside the page (a front proxy's
// prefix included), ws: or wss: as the page is http: or https:.
export function wsURL() {
  const u = new URL('websockify', location.href);
  u.protocol = u.protocol === 'https:' ? 'wss:' : 'ws:';
  u.search = '';
  u.hash = '';
  return u.href;
}

// Characters a cookie value may hold (RFC 6265 cookie-octet).
const cookieSafe = /^[\x21\x23-\x2B\x2D-\x3A\x3C-\x5B\x5D-\x7E]+$/;

function cookie(name, value, maxAge) {
  const path = new URL(wsURL()).pathname;
  const secure = location.protocol === 'https:' ? '; Secure' : '';
  document.cookie = `${name}=${value}; Path=${path}; Max-Age=${maxAge}; SameSite=Strict${secure}`;
}

// refusalID names this page's websockets to the proxy, which keeps the
// reason if it refuses them (see refused); it is no secret.
let refusalID = '';

// setToken puts the token in the cookie the websocket carries, for a short
// while: long enough for SPICE's channels to open, then it expires.
// It returns false (and shows why) when there is no usable token.
export function setToken() {
  if (!token) {
    show('no token', 'the link has no #token=…: get one with "virtconsole open"', false);
    return false;
  }
  if (!cookieSafe.test(token)) {
    show('bad token', 'the token holds characters a cookie cannot carry', false);
    return false;
  }
  refusalID = Array.from(crypto.getRandomValues(new Uint8Array(16)), b => b.toString(16).padStart(2, '0')).join('');
  cookie('token', token, 30);
  cookie('refusal', refusalID, 30);
  if (role && cookieSafe.test(role)) {
    cookie('role', role, 30);
  }
  return true;
}

// clearToken removes the cookies once the websocket is open.
export function clearToken() {
  cookie('token', '', 0);
  cookie('refusal', '', 0);
  cookie('role', '', 0);
}

// show sets the status bar: the state, a reason, and whether to offer
// reconnecting.
export function show(s, reason, canReconnect) {
  state.state = s;
  state.reason = reason || '';
  document.getElementById('state').textContent = s;
  document.getElementById('reason').textContent = reason || '';
  document.getElementById('reconnect').hidden = !canReconnect;
  document.body.dataset.state = s;
}

// refused shows why a websocket that never opened failed: the proxy's
// one-line reason, which it keeps under the page's refusal id since
// browsers do not show a page the HTTP answer to a refused websocket.
export async function refused() {
  clearToken();
  show('refused', 'the proxy refused the console or could not be reached', true);
  try {
    const resp = await fetch(new URL('refusal?id=' + refusalID, location.href), {cache: 'no-store'});
    if (resp.ok) {
      show('refused', 'the proxy refused the console: ' + (await resp.text()).trim(), true);
    }
  } catch (e) {
    // The proxy is unreachable: the first message stands.
  }
}

// start runs connect now and on every click on Reconnect.
export function start(connect) {
  document.getElementById('reconnect').addEventListener('click', () => {
    if (setToken()) {
      show('connecting', '', false);
      connect();
    }
  });
  if (setToken()) {
    show('connecting', '', false);
    connect();
  }
}
