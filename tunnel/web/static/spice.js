// The SPICE page: spice-html5 on the proxy's websocket (one websocket per
// SPICE channel, all with the token cookie).
import { SpiceMainConn } from '../vendor/spice-html5/src/main.js';
import * as page from './common.js';

let sc = null;

function connect() {
  document.getElementById('screen').replaceChildren();
  document.getElementById('messages').replaceChildren();
  let opened = false;
  const failed = e => {
    page.clearToken();
    const msg = String((e && e.message) || e || 'connection closed');
    if (!opened) {
      page.refused();
    } else {
      page.show('disconnected', msg, true);
    }
    if (sc) {
      sc.stop();
      sc = null;
    }
  };
  try {
    sc = new SpiceMainConn({
      uri: page.wsURL(),
      password: '',
      screen_id: 'screen',
      message_id: 'messages',
      onsuccess: () => {
        opened = true;
        page.state.connects++;
        page.show('connected', '', false);
        // The other channels open next; the cookie expires by itself
        // after a while, and is cleared when the session fails.
      },
      onerror: failed,
    });
  } catch (e) {
    failed(e);
  }
  window.sc = sc;
}

page.start(connect);
