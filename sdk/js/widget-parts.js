/* Magpie widgets, the shared parts: settings, DOM helpers, result cards and view tracking.
 * Bundled by the gateway after magpie-sdk.js and before widgets.js (see widgets.js). */
// Read while the script runs: afterwards document.currentScript is null.
const WIDGET_SCRIPT = typeof document !== 'undefined' ? document.currentScript : null;
const DEFAULT_FL = ['title', 'price', 'product_url', 'image_url'];
const MAX_UPLOAD_BYTES = 10 * 1024 * 1024;
const MAX_PHOTO_BYTES = 60 * 1024 * 1024; // bigger than any phone photo: not worth decoding
const UPLOAD_MAX_SIDE = 1024; // the model looks at 224 px: more only costs the shopper's uplink
const clients = new Map();
let uniqueId = 0;

function injectStyle() {
  if (document.getElementById('magpie-widgets-style')) return;
  const style = document.createElement('style');
  style.id = 'magpie-widgets-style';
  style.textContent = WIDGETS_CSS; // sdk/js/widgets.css, bundled by the gateway
  // First in <head>: the merchant's own stylesheet wins over ours.
  document.head.insertBefore(style, document.head.firstChild);
}

/** A DOM element: `attrs` are attributes, except `text` and `on*` handlers. */
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'text') el.textContent = v;
    else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children) if (c) el.append(c);
  return el;
}

const CAMERA_SVG = '<svg viewBox="0 0 24 24" aria-hidden="true" focusable="false"><path d="M9 3 7.2 5H4a2 2 0 0 0-2 2v11a2 2 0 0 0 2 2h16a2 2 0 0 0 2-2V7a2 2 0 0 0-2-2h-3.2L15 3H9zm3 5a5 5 0 1 1 0 10 5 5 0 0 1 0-10zm0 2a3 3 0 1 0 0 6 3 3 0 0 0 0-6z"/></svg>';

function scriptOrigin() {
  try {
    return WIDGET_SCRIPT && WIDGET_SCRIPT.src ? new URL(WIDGET_SCRIPT.src).origin : location.origin;
  } catch {
    return location.origin;
  }
}

/** One client per (host, app key, placement): widgets of one kind share a tracking queue. */
function clientFor(el, placement) {
  const host = (el.dataset.host || scriptOrigin()).replace(/\/+$/, '');
  const key = `${host} ${el.dataset.appKey} ${placement}`;
  if (!clients.has(key)) clients.set(key, new MagpieClient({ appKey: el.dataset.appKey, host, placement }));
  return clients.get(key);
}

function settingsOf(el, defaultLimit) {
  const fl = el.dataset.fl ? el.dataset.fl.split(',').map((s) => s.trim()).filter(Boolean) : DEFAULT_FL;
  let fq = [];
  const raw = (el.dataset.fq || '').trim();
  if (raw.startsWith('[')) {
    try { fq = JSON.parse(raw).map(String); } catch { console.warn('magpie: data-fq is not a JSON list'); }
  } else if (raw) {
    fq = [raw];
  }
  const limit = Math.min(Math.max(parseInt(el.dataset.limit, 10) || defaultLimit, 1), 100);
  return { fl, fq, limit, currency: el.dataset.currency || '' };
}

/** `url` when it is http(s) (relative ones resolve against the page), else null: a catalog
 * value never becomes a javascript: link. */
function safeUrl(url) {
  if (!url) return null;
  try {
    const u = new URL(url, location.href);
    return u.protocol === 'http:' || u.protocol === 'https:' ? u.href : null;
  } catch {
    return null;
  }
}

function imageOf(item, client) {
  const vm = item.value_map || {};
  return safeUrl(vm.image_url) || safeUrl(vm.im_url) || `${client.host}/widgets/v1/thumbnail?access_key=`
    + `${encodeURIComponent(client.appKey)}&im_name=${encodeURIComponent(item.im_name)}`;
}

/** A photo scaled down to UPLOAD_MAX_SIDE pixels (JPEG), oriented as its EXIF says; small
 * images, and any the browser cannot decode (the server then says why), go as they are. */
async function shrinkImage(file) {
  if (typeof createImageBitmap !== 'function') return file;
  let bitmap;
  try {
    bitmap = await createImageBitmap(file, { imageOrientation: 'from-image' });
  } catch {
    return file;
  }
  const scale = UPLOAD_MAX_SIDE / Math.max(bitmap.width, bitmap.height);
  if (scale >= 1) {
    bitmap.close();
    return file;
  }
  const canvas = document.createElement('canvas');
  canvas.width = Math.round(bitmap.width * scale);
  canvas.height = Math.round(bitmap.height * scale);
  const g = canvas.getContext('2d');
  g.fillStyle = '#fff'; // transparent pixels on white, as the catalog's images are
  g.fillRect(0, 0, canvas.width, canvas.height);
  g.drawImage(bitmap, 0, 0, canvas.width, canvas.height);
  bitmap.close();
  const blob = await new Promise((resolve) => canvas.toBlob(resolve, 'image/jpeg', 0.9));
  return blob || file;
}

function priceText(value, currency) {
  if (value === undefined || value === '') return '';
  const n = Number(value);
  if (!Number.isFinite(n)) return String(value);
  return `${currency ? `${currency} ` : ''}${n.toFixed(2)}`;
}

/** Records product_view once per card per search, when at least half of the card is visible. */
function viewTracker(client) {
  const seen = new Set();
  const info = new WeakMap();
  const record = (el) => {
    const i = info.get(el);
    const key = `${i.queryId} ${i.pid}`;
    if (seen.has(key)) return;
    seen.add(key);
    client.track('product_view', i);
    el.dataset.magpieViewed = 'true';
    // For the merchant's own analytics (a tag manager, say), as magpie:click is.
    el.dispatchEvent(new CustomEvent('magpie:view', { bubbles: true, detail: { ...i } }));
  };
  const observer = typeof IntersectionObserver === 'function'
    ? new IntersectionObserver((entries) => {
      for (const e of entries) {
        if (e.isIntersecting && e.intersectionRatio >= 0.5) {
          record(e.target);
          observer.unobserve(e.target);
        }
      }
    }, { threshold: 0.5 })
    : null;
  return {
    observe(el, i) {
      info.set(el, i);
      if (observer) observer.observe(el);
      else record(el); // no IntersectionObserver: count what was shown
    },
    reset() {
      if (observer) observer.disconnect();
    },
  };
}

/** A result card: a link to the product page carrying the reqid, or a button without one. */
function card(item, pos, ctx) {
  const vm = item.value_map || {};
  const title = vm.title || vm.name || item.im_name;
  const link = safeUrl(vm.product_url);
  const url = link ? withReqid(link, ctx.reqid) : null;
  const body = [
    h('img', { src: imageOf(item, ctx.client), alt: title, loading: 'lazy', decoding: 'async' }),
    h('span', { class: 'magpie-card-title', text: title }),
    vm.price !== undefined ? h('span', { class: 'magpie-card-price', text: priceText(vm.price, ctx.currency) }) : null,
  ];
  const onclick = () => {
    ctx.client.track('product_click', { queryId: ctx.reqid, pid: item.im_name, pos });
    carryReqid(ctx.reqid);
    ctx.client.flush({ beacon: true }); // the page may be left right away
    ctx.root.dispatchEvent(new CustomEvent('magpie:click', { bubbles: true,
      detail: { im_name: item.im_name, reqid: ctx.reqid, pos, item } }));
  };
  const target = url
    ? h('a', { class: 'magpie-card-link', href: url, onclick }, ...body)
    : h('button', { type: 'button', class: 'magpie-card-link', onclick }, ...body);
  const li = h('li', { class: 'magpie-card', 'data-im-name': item.im_name, 'data-pos': pos }, target);
  ctx.views.observe(li, { queryId: ctx.reqid, pid: item.im_name, pos });
  return li;
}

function setState(el, state) {
  el.dataset.magpieState = state;
}

function announce(el, reqid, resp) {
  el.dispatchEvent(new CustomEvent('magpie:results', { bubbles: true,
    detail: { reqid, total: resp.total, page: resp.page, count: resp.result.length } }));
}
