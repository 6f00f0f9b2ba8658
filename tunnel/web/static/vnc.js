// The VNC page: noVNC's RFB on the proxy's websocket.
import RFB from '../vendor/novnc/core/rfb.js';
import * as page from './common.js';

let rfb = null;

function connect() {
  let opened = false;
  rfb = new RFB(document.getElementById('screen'), page.wsURL(), {wsProtocols: ['binary']});
  rfb.scaleViewport = true;
  rfb.addEventListener('connect', () => {
    opened = true;
    page.state.connects++;
    page.clearToken();
    page.show('connected', '', false);
  });
  rfb.addEventListener('desktopname', e => { document.title = e.detail.name + ' (VNC)'; });
  rfb.addEventListener('securityfailure', e => {
    page.show('refused', 'VNC security failure: ' + (e.detail.reason || e.detail.status), true);
  });
  rfb.addEventListener('credentialsrequired', () => {
    page.show('refused', 'the console asks for a password: the proxy should have given it', true);
    rfb.disconnect();
  });
  rfb.addEventListener('disconnect', e => {
    page.clearToken();
    if (page.state.state === 'refused') {
      return;
    }
    if (!opened) {
      page.refused();
    } else {
      page.show('disconnected', e.detail.clean ? 'the session ended' : 'the connection was lost', true);
    }
  });
  window.rfb = rfb;
}

page.start(connect);
