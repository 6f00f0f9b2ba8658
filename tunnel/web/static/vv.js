// The .vv page: the SPICE console's virt-viewer file for remote-viewer,
// through the proxy's SPICE CONNECT gateway. The token (from the link's
// fragment) goes to "spice.vv" beside the page in an Authorization header,
// never in a URL; the answer is saved as console.vv.
import * as page from './common.js';

async function download() {
  if (!page.token) {
    page.show('no token', 'the link has no #token=…: get one with "virtconsole open --vv"', false);
    return;
  }
  page.show('fetching', '', false);
  let resp;
  try {
    resp = await fetch(new URL('spice.vv', location.href), {
      method: 'POST',
      headers: {'Authorization': 'Bearer ' + page.token},
      cache: 'no-store',
      credentials: 'omit',
    });
  } catch (e) {
    page.show('failed', 'the proxy could not be reached: ' + String((e && e.message) || e), false);
    return;
  }
  if (!resp.ok) {
    page.show('refused', 'the proxy refused the .vv file: ' + (await resp.text()).trim(), false);
    return;
  }
  const href = URL.createObjectURL(await resp.blob());
  const a = document.createElement('a');
  a.href = href;
  a.download = 'console.vv';
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(href), 60000);
  page.state.downloads++;
  page.show('downloaded', 'open console.vv with remote-viewer (virt-viewer); it holds the token: use it once, then delete it', false);
}

page.state.downloads = 0;
document.getElementById('download').addEventListener('click', download);
download();
