/* Magpie web widgets: "Search by image" and "Similar products". Plain DOM, no framework.
 * This file is the body of /widgets/v1/magpie-widgets.js: the gateway bundles it after
 * magpie-sdk.js and widgets.css (as WIDGETS_CSS) in one closure, so the SDK's declarations
 * (MagpieClient, withReqid, ...) are in scope here. Embed:
 *   <script src="HOST/widgets/v1/magpie-widgets.js" defer></script>
 *   <div data-magpie-widget="search-by-image" data-app-key="APPKEY"></div>
 *   <div data-magpie-widget="similar" data-app-key="APPKEY" data-im-name="SKU" data-limit="12"></div>
 */

// Read while the script runs: afterwards document.currentScript is null.
const WIDGET_SCRIPT = typeof document !== 'undefined' ? document.currentScript : null;
const DEFAULT_FL = ['title', 'price', 'product_url', 'image_url'];
const MAX_UPLOAD_BYTES = 10 * 1024 * 1024;
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

function imageOf(item, client) {
  const vm = item.value_map || {};
  return vm.image_url || vm.im_url || `${client.host}/widgets/v1/thumbnail?access_key=`
    + `${encodeURIComponent(client.appKey)}&im_name=${encodeURIComponent(item.im_name)}`;
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
  const url = vm.product_url ? withReqid(vm.product_url, ctx.reqid) : null;
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
  const link = url
    ? h('a', { class: 'magpie-card-link', href: url, onclick }, ...body)
    : h('button', { type: 'button', class: 'magpie-card-link', onclick }, ...body);
  const li = h('li', { class: 'magpie-card', 'data-im-name': item.im_name, 'data-pos': pos }, link);
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

/** The "Search by image" widget. */
function mountSearchByImage(el) {
  const client = clientFor(el, 'search-by-image');
  const cfg = settingsOf(el, 12);
  const id = `magpie-${++uniqueId}`;
  const views = viewTracker(client);
  const state = { image: null, imUrl: '', imId: '', page: 1, filters: {}, facets: [], total: 0, busy: false };

  const file = h('input', { type: 'file', accept: 'image/*', class: 'magpie-sr', tabindex: '-1',
    'aria-hidden': 'true', id: `${id}-file` });
  const upload = h('button', { type: 'button', class: 'magpie-btn magpie-upload', onclick: () => file.click() });
  upload.innerHTML = CAMERA_SVG;
  upload.append(h('span', { text: el.dataset.label || 'Search by image' }));
  const urlInput = h('input', { type: 'url', id: `${id}-url`, placeholder: 'https://…/photo.jpg',
    required: true, autocomplete: 'off' });
  const urlForm = h('form', { class: 'magpie-url-form', role: 'search', onsubmit: (e) => {
    e.preventDefault();
    if (urlInput.value.trim()) newQuery({ imUrl: urlInput.value.trim() });
  } }, h('label', { class: 'magpie-sr', for: `${id}-url`, text: 'Image URL' }), urlInput,
  h('button', { type: 'submit', class: 'magpie-btn magpie-btn-quiet', text: 'Search' }));
  const drop = h('div', { class: 'magpie-drop' }, upload, file,
    h('span', { class: 'magpie-hint', text: 'or drop an image here, or paste an image or its URL' }), urlForm);
  const preview = h('img', { alt: 'Your image' });
  const query = h('div', { class: 'magpie-query', hidden: true }, preview);
  const status = h('p', { class: 'magpie-status', role: 'status', 'aria-live': 'polite' });
  const filters = h('div', { class: 'magpie-filters', hidden: true, role: 'group', 'aria-label': 'Filters' });
  const grid = h('ul', { class: 'magpie-grid', role: 'list', 'aria-label': 'Similar products' });
  const prev = h('button', { type: 'button', class: 'magpie-btn magpie-btn-quiet magpie-prev', text: 'Previous',
    onclick: () => go(state.page - 1) });
  const next = h('button', { type: 'button', class: 'magpie-btn magpie-btn-quiet magpie-next', text: 'Next',
    onclick: () => go(state.page + 1) });
  const pageLabel = h('span', { class: 'magpie-page', 'aria-live': 'polite' });
  const pager = h('nav', { class: 'magpie-pager', hidden: true, 'aria-label': 'Result pages' }, prev, pageLabel, next);
  const root = h('section', { class: 'magpie-widget magpie-sbi', 'aria-label': 'Search by image' },
    drop, query, status, filters, grid, pager);
  el.replaceChildren(root);
  setState(el, 'idle');

  file.addEventListener('change', () => { if (file.files[0]) newQuery({ image: file.files[0] }); file.value = ''; });
  drop.addEventListener('dragover', (e) => { e.preventDefault(); drop.classList.add('magpie-dragging'); });
  drop.addEventListener('dragleave', () => drop.classList.remove('magpie-dragging'));
  drop.addEventListener('drop', (e) => {
    e.preventDefault();
    drop.classList.remove('magpie-dragging');
    const dt = e.dataTransfer;
    const image = dt && Array.from(dt.files || []).find((f) => f.type.startsWith('image/'));
    const link = dt && (dt.getData('text/uri-list') || dt.getData('text/plain'));
    if (image) newQuery({ image });
    else if (link && /^https?:\/\//i.test(link.trim())) newQuery({ imUrl: link.trim().split('\n')[0] });
    else fail('Drop an image file or an image link.');
  });
  root.addEventListener('paste', (e) => {
    if (e.target === urlInput) return; // typing a URL is handled by the form
    const items = Array.from((e.clipboardData && e.clipboardData.files) || []);
    const image = items.find((f) => f.type.startsWith('image/'));
    const text = e.clipboardData && e.clipboardData.getData('text/plain');
    if (image) { e.preventDefault(); newQuery({ image }); } else if (text && /^https?:\/\//i.test(text.trim())) {
      e.preventDefault(); newQuery({ imUrl: text.trim() });
    }
  });

  function fail(message) {
    status.textContent = message;
    status.classList.add('magpie-error');
  }

  function newQuery(source) {
    if (source.image) {
      if (!source.image.type || !source.image.type.startsWith('image/')) return fail('Please choose an image file.');
      if (source.image.size > MAX_UPLOAD_BYTES) return fail('The image is larger than 10 MB.');
    }
    if (preview.src.startsWith('blob:')) URL.revokeObjectURL(preview.src);
    preview.src = source.image ? URL.createObjectURL(source.image) : source.imUrl;
    query.hidden = false;
    Object.assign(state, { image: source.image || null, imUrl: source.imUrl || '', imId: '', page: 1,
      filters: {}, facets: [] });
    return run(true);
  }

  function go(page) {
    if (page < 1 || state.busy) return;
    state.page = page;
    run(false);
  }

  async function run(fresh) {
    state.busy = true;
    setState(el, 'loading');
    status.classList.remove('magpie-error');
    status.textContent = 'Searching…';
    const fq = [...cfg.fq, ...Object.entries(state.filters).map(([k, v]) => `${k}:${quoteFq(v)}`)];
    const params = { limit: cfg.limit, page: state.page, fl: cfg.fl, fq };
    if (fresh) Object.assign(params, { facets: '*', facets_show_count: true });
    if (state.imId) params.im_id = state.imId;
    else if (state.image) params.image = state.image;
    else params.im_url = state.imUrl;
    let resp;
    try {
      resp = await client.uploadSearch(params);
    } catch (err) {
      state.busy = false;
      // The query image is kept two days: past that, search again from the image itself.
      if (state.imId && (state.image || state.imUrl)) { state.imId = ''; return run(fresh); }
      setState(el, 'error');
      return fail(`Could not search: ${err.message}`);
    }
    state.busy = false;
    state.imId = resp.im_id || state.imId;
    state.total = resp.total;
    if (fresh) state.facets = (resp.facets || []).filter((f) => f.items && f.items.length);
    render(resp);
    return resp;
  }

  function render(resp) {
    views.reset();
    const ctx = { client, reqid: resp.reqid, views, root: el, currency: cfg.currency };
    const first = (resp.page - 1) * resp.limit;
    grid.replaceChildren(...resp.result.map((item, i) => card(item, first + i + 1, ctx)));
    const pages = Math.max(1, Math.ceil(resp.total / cfg.limit));
    status.textContent = resp.total ? `${resp.total} similar products` : 'No similar products found.';
    pager.hidden = pages < 2;
    pageLabel.textContent = `Page ${resp.page} of ${pages}`;
    prev.disabled = resp.page <= 1;
    next.disabled = resp.page >= pages;
    renderFilters();
    setState(el, 'ready');
    announce(el, resp.reqid, resp);
  }

  function renderFilters() {
    filters.hidden = !state.facets.length;
    filters.replaceChildren(...state.facets.map((f) => {
      const select = h('select', { name: f.key, 'data-field': f.key, onchange: () => {
        if (select.value) state.filters[f.key] = select.value; else delete state.filters[f.key];
        state.page = 1;
        run(false);
      } }, h('option', { value: '', text: 'All' }),
      ...f.items.map((it) => h('option', { value: it.value,
        text: it.count !== undefined ? `${it.value} (${it.count})` : it.value })));
      select.value = state.filters[f.key] || '';
      return h('label', {}, h('span', { text: f.key.replace(/_/g, ' ') }), select);
    }));
  }

  return { search: newQuery, go };
}

/** The "Similar products" carousel for a product page. */
function mountSimilar(el) {
  const client = clientFor(el, 'similar');
  const cfg = settingsOf(el, 12);
  const imName = el.dataset.imName;
  const views = viewTracker(client);
  const title = el.dataset.title || 'You may also like';
  const track = h('ul', { class: 'magpie-track', role: 'list', tabindex: '0', 'aria-label': title });
  const scroll = (dir) => track.scrollBy({ left: dir * track.clientWidth * 0.9 });
  const prev = h('button', { type: 'button', class: 'magpie-btn magpie-btn-quiet magpie-prev',
    'aria-label': 'Previous products', text: '‹', onclick: () => scroll(-1) });
  const next = h('button', { type: 'button', class: 'magpie-btn magpie-btn-quiet magpie-next',
    'aria-label': 'Next products', text: '›', onclick: () => scroll(1) });
  track.addEventListener('keydown', (e) => {
    if (e.key === 'ArrowRight' || e.key === 'ArrowLeft') {
      e.preventDefault();
      scroll(e.key === 'ArrowRight' ? 1 : -1);
    }
  });
  const root = h('section', { class: 'magpie-widget magpie-similar', 'aria-label': title },
    h('div', { class: 'magpie-similar-head' }, h('h2', { class: 'magpie-title', text: title }),
      h('div', { class: 'magpie-nav' }, prev, next)), track);
  const updateNav = () => {
    const max = track.scrollWidth - track.clientWidth;
    prev.hidden = next.hidden = max <= 1; // everything fits: nothing to scroll
    prev.disabled = track.scrollLeft <= 1;
    next.disabled = track.scrollLeft >= max - 1;
  };
  track.addEventListener('scroll', updateNav, { passive: true });
  if (typeof ResizeObserver === 'function') new ResizeObserver(updateNav).observe(track);
  if (!imName) {
    setState(el, 'error');
    console.warn('magpie: the similar widget needs data-im-name');
    return null;
  }
  setState(el, 'loading');
  return client.recommendation(imName, { limit: cfg.limit, fl: cfg.fl, fq: cfg.fq }).then((resp) => {
    if (!resp.result.length) {
      setState(el, 'empty');
      return resp;
    }
    el.replaceChildren(root);
    const ctx = { client, reqid: resp.reqid, views, root: el, currency: cfg.currency };
    track.replaceChildren(...resp.result.map((item, i) => card(item, i + 1, ctx)));
    updateNav();
    setState(el, 'ready');
    announce(el, resp.reqid, resp);
    return resp;
  }, (err) => {
    // A product page must not show a broken box: the widget stays empty, the reason is logged.
    setState(el, 'error');
    el.dataset.magpieError = err.message;
    console.warn('magpie: similar products unavailable:', err.message);
  });
}

const MOUNTERS = { 'search-by-image': mountSearchByImage, similar: mountSimilar };

/** Mount the widget an element asks for (once); returns its controller. */
function mount(el) {
  if (el.magpieWidget !== undefined) return el.magpieWidget;
  const mounter = MOUNTERS[el.dataset.magpieWidget];
  if (!mounter) {
    console.warn(`magpie: unknown widget "${el.dataset.magpieWidget}"`);
    el.magpieWidget = null;
    return null;
  }
  if (!el.dataset.appKey) {
    console.warn('magpie: a widget needs data-app-key (a search-only app key)');
    el.magpieWidget = null;
    return null;
  }
  injectStyle();
  el.magpieWidget = mounter(el);
  return el.magpieWidget;
}

/** Mount every widget element under `root`. */
function scan(root = document) {
  root.querySelectorAll('[data-magpie-widget]').forEach(mount);
}

if (typeof window !== 'undefined' && typeof document !== 'undefined') {
  captureReqid(); // a product page reached from a widget keeps the search's reqid for attribution
  window.MagpieWidgets = { version: VERSION, mount, scan, createClient, withReqid, captureReqid,
    clients: () => Array.from(clients.values()) };
  const start = () => {
    scan();
    // Storefronts that render late (single-page apps) get their widgets mounted too.
    let queued = false;
    new MutationObserver(() => {
      if (queued) return;
      queued = true;
      queueMicrotask(() => { queued = false; scan(); });
    }).observe(document.body, { childList: true, subtree: true });
  };
  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
  else start();
}
