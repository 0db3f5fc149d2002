/* Magpie web widgets: "Search by image" and "Similar products". Plain DOM, no framework.
 * This file is the end of /widgets/v1/magpie-widgets.js: the gateway bundles magpie-sdk.js,
 * widgets.css (as WIDGETS_CSS), widget-parts.js and this file in one closure, so their
 * declarations (MagpieClient, withReqid, card, ...) are in scope here. Embed:
 *   <script src="HOST/widgets/v1/magpie-widgets.js" defer></script>
 *   <div data-magpie-widget="search-by-image" data-app-key="APPKEY"></div>
 *   <div data-magpie-widget="similar" data-app-key="APPKEY" data-im-name="SKU" data-limit="12"></div>
 */

/** The "Search by image" widget. */
function mountSearchByImage(el) {
  const client = clientFor(el, 'search-by-image');
  const cfg = settingsOf(el, 12);
  const id = `magpie-${++uniqueId}`;
  const views = viewTracker(client);
  const state = { image: null, imUrl: '', imId: '', page: 1, filters: {}, facets: [], total: 0, busy: false,
    seq: 0 };

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
  const query = h('div', { class: 'magpie-query', hidden: true });
  // A link that is no image (the search says why) leaves no broken picture behind.
  const preview = h('img', { alt: 'Your image', onerror: () => { query.hidden = true; } });
  query.append(preview);
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
    const files = Array.from((dt && dt.files) || []);
    const image = files.find((f) => f.type.startsWith('image/'));
    const link = dt && (dt.getData('text/uri-list') || dt.getData('text/plain'));
    if (image) newQuery({ image });
    else if (files.length) fail('Please choose an image file.');
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

  async function newQuery(source) {
    let image = source.image || null;
    if (image) {
      if (!image.type || !image.type.startsWith('image/')) return fail('Please choose an image file.');
      if (image.size > MAX_PHOTO_BYTES) return fail('The image is too large.');
      image = await shrinkImage(image);
      if (image.size > MAX_UPLOAD_BYTES) return fail('The image is larger than 10 MB.');
    }
    if (image) urlInput.value = ''; // the box shows the query's URL, or nothing
    if (preview.src.startsWith('blob:')) URL.revokeObjectURL(preview.src);
    preview.src = image ? URL.createObjectURL(image) : source.imUrl;
    query.hidden = false;
    Object.assign(state, { image, imUrl: source.imUrl || '', imId: '', page: 1, filters: {}, facets: [] });
    return run(true);
  }

  function go(page) {
    if (page < 1 || state.busy) return;
    state.page = page;
    run(false);
  }

  async function run(fresh) {
    const seq = ++state.seq;
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
      if (seq !== state.seq) return null; // a newer search has started: its answer counts
      state.busy = false;
      // The query image is kept two days: past that, search again from the image itself.
      if (state.imId && (state.image || state.imUrl)) { state.imId = ''; return run(fresh); }
      setState(el, 'error');
      return fail(`Could not search: ${err.message}`);
    }
    if (seq !== state.seq) return null;
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
