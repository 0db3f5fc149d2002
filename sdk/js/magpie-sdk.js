/**
 * Magpie JavaScript SDK: visual search and shopper tracking for browsers and Node 20.
 * A dependency-free ES module (global fetch, FormData, Blob). The gateway also serves it at
 * /widgets/v1/magpie-sdk.js and bundles it into the widget script, so it exports only
 * declarations (no default export, no imports).
 * @module magpie-visual-search
 */

export const VERSION = '0.1.0';
export const SDK_NAME = 'magpie-js';
/** URL parameter that carries a search's reqid to the product page. */
export const REQID_PARAM = 'magpie_reqid';
export const TRACK_ACTIONS = ['product_view', 'product_click', 'add_to_cart', 'transaction'];

const UID_KEY = 'magpie_uid';
const SID_KEY = 'magpie_sid';
const CARRIED_KEY = 'magpie_reqid';
const SESSION_IDLE_MS = 30 * 60 * 1000;
const PRODUCT_ACTIONS = ['product_view', 'product_click', 'add_to_cart', 'add_to_wishlist'];
const MAX_BATCH = 1000; // the server's limit per POST /v3/events

/**
 * @typedef {Object} SearchResult
 * @property {string} im_name
 * @property {number} [score]
 * @property {Object<string, string>} value_map
 */
/**
 * @typedef {Object} Facet
 * @property {string} key
 * @property {{value: string, count?: number}[]} [items]
 * @property {{min: number, max: number}} [range]
 */
/**
 * The ViSearch answer envelope.
 * @typedef {Object} SearchResponse
 * @property {'OK'|'fail'} status
 * @property {string} method
 * @property {string[]} error
 * @property {number} page
 * @property {number} limit
 * @property {number} total
 * @property {SearchResult[]} result
 * @property {Facet[]} [facets]
 * @property {string} [im_id]  upload search: page again with this id instead of the image
 * @property {string} reqid  the search's id; tracked events carry it as `queryId`
 */
/**
 * Search parameters, as the ViSearch API names them. `fq` may be an object
 * (`{brand: 'Nike'}` → `fq=brand:Nike`) or a list of `field:value` strings; lists repeat.
 * @typedef {Object<string, (string|number|boolean|string[]|Object<string,string>|undefined)>} SearchParams
 */
/**
 * @typedef {Object} ClientOptions
 * @property {string} appKey  a search-only app key (safe in browsers)
 * @property {string} [host]  the Magpie gateway, e.g. "https://search.example.com"; default: the page's origin
 * @property {string} [accessKey]  with secretKey: HTTP Basic full access (servers only, never in a browser)
 * @property {string} [secretKey]
 * @property {string} [placement]  a widget or page name; reports split by it (the tracker `code` is appKey:placement)
 * @property {typeof fetch} [fetch]
 * @property {number} [timeoutMs=15000]
 * @property {number} [batchSize=20]  events queued before a batch is sent
 * @property {number} [flushIntervalMs=2000]  the longest an event waits in the queue
 * @property {string} [uid]  override the persisted user id
 * @property {string} [sid]  override the session id
 * @property {boolean} [autoFlushOnHide=true]  send the queue by sendBeacon when the page is hidden or left
 */

/** An error answered by the API (`status: "fail"`) or a failed request. */
export class MagpieError extends Error {
  /**
   * @param {string} message
   * @param {{status?: number, errors?: Array<*>, method?: string, reqid?: string}} [info]
   */
  constructor(message, info = {}) {
    super(message);
    this.name = 'MagpieError';
    this.status = info.status;
    this.errors = info.errors || [];
    this.method = info.method;
    this.reqid = info.reqid;
  }
}

/** A random hex id of `length` characters (the tracker caps uid and sid at 32). */
export function randomId(length = 32) {
  const bytes = new Uint8Array(Math.ceil(length / 2));
  globalThis.crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('').slice(0, length);
}

function storage(kind) {
  // Access itself throws where storage is blocked (sandboxed frames, some privacy modes).
  try {
    const s = globalThis[kind];
    if (!s) return null;
    s.getItem(UID_KEY);
    return s;
  } catch {
    return null;
  }
}

function readCookie(name) {
  if (typeof document === 'undefined') return null;
  const found = document.cookie.split('; ').find((c) => c.startsWith(`${name}=`));
  return found ? decodeURIComponent(found.slice(name.length + 1)) : null;
}

function writeCookie(name, value) {
  if (typeof document === 'undefined') return;
  document.cookie = `${name}=${encodeURIComponent(value)}; max-age=${400 * 86400}; path=/; SameSite=Lax`;
}

/** The persisted user id: localStorage, else a first-party cookie, else a new id per page. */
export function persistentUid() {
  const local = storage('localStorage');
  let uid = (local && local.getItem(UID_KEY)) || readCookie(UID_KEY);
  if (!uid || uid.length > 32) uid = randomId();
  if (local) local.setItem(UID_KEY, uid);
  writeCookie(UID_KEY, uid); // the cookie outlives a cleared localStorage and vice versa
  return uid;
}

/**
 * The session id of this tab (sessionStorage), renewed after 30 minutes without activity;
 * without sessionStorage (Node), `current` or a new id.
 */
export function sessionId(now = Date.now(), current = null) {
  const session = storage('sessionStorage');
  if (!session) return current || randomId();
  let sid = null;
  try {
    const saved = JSON.parse(session.getItem(SID_KEY) || 'null');
    if (saved && typeof saved.id === 'string' && now - saved.at < SESSION_IDLE_MS) sid = saved.id;
  } catch { /* a value some other script wrote: start a new session */ }
  sid = sid || randomId();
  session.setItem(SID_KEY, JSON.stringify({ id: sid, at: now }));
  return sid;
}

/**
 * `url` with the search's reqid added, for links from results to product pages.
 * @param {string} url
 * @param {string} reqid
 * @returns {string}
 */
export function withReqid(url, reqid) {
  if (!reqid) return url;
  const base = typeof location !== 'undefined' ? location.href : 'http://localhost/';
  const u = new URL(url, base);
  u.searchParams.set(REQID_PARAM, reqid);
  return u.href;
}

/**
 * On a product page: the reqid the shopper arrived with (URL parameter, kept in
 * sessionStorage for the rest of the visit), so add_to_cart and transaction are attributed.
 * @param {string} [href]  default: the page's URL
 * @returns {string|null}
 */
export function captureReqid(href) {
  const session = storage('sessionStorage');
  const source = href || (typeof location !== 'undefined' ? location.href : null);
  if (source) {
    const reqid = new URL(source, 'http://localhost/').searchParams.get(REQID_PARAM);
    if (reqid && reqid.length <= 64) {
      if (session) session.setItem(CARRIED_KEY, reqid);
      return reqid;
    }
  }
  return session ? session.getItem(CARRIED_KEY) : null;
}

/** Remember `reqid` as the one to attribute later events to (a click before navigating). */
export function carryReqid(reqid) {
  const session = storage('sessionStorage');
  if (session && reqid) session.setItem(CARRIED_KEY, reqid);
}

/**
 * Query pairs of search parameters: arrays repeat, `fq` objects become `field:value`.
 * @param {SearchParams} params
 * @returns {[string, string][]}
 */
export function toPairs(params) {
  const pairs = [];
  for (const [key, value] of Object.entries(params || {})) {
    if (value === undefined || value === null || value === '') continue;
    if (key === 'fq' && typeof value === 'object' && !Array.isArray(value)) {
      for (const [field, v] of Object.entries(value)) {
        if (v !== undefined && v !== null && v !== '') pairs.push(['fq', `${field}:${v}`]);
      }
    } else if (Array.isArray(value)) {
      for (const v of value) if (v !== undefined && v !== null) pairs.push([key, String(v)]);
    } else {
      pairs.push([key, String(value)]);
    }
  }
  return pairs;
}

/** A filter value quoted for `fq` (exact match, even with spaces, commas or " OR "). */
export function quoteFq(value) {
  return `"${String(value).replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`;
}

function base64(text) {
  if (typeof btoa === 'function') return btoa(String.fromCharCode(...new TextEncoder().encode(text)));
  return globalThis.Buffer.from(text, 'utf8').toString('base64');
}

function asBlob(image) {
  if (image instanceof Blob) return image;
  if (image instanceof ArrayBuffer || ArrayBuffer.isView(image)) return new Blob([image]);
  throw new TypeError('image must be a File, Blob, ArrayBuffer or typed array');
}

/** A Magpie search and tracking client. */
export class MagpieClient {
  /** @param {ClientOptions} options */
  constructor(options) {
    if (!options || !options.appKey) throw new TypeError('appKey (a search-only app key) is required');
    const origin = typeof location !== 'undefined' ? location.origin : undefined;
    this.host = String(options.host || origin || '').replace(/\/+$/, '');
    if (!this.host) throw new TypeError('host is required outside a browser');
    this.appKey = options.appKey;
    this.placement = options.placement || '';
    this.timeoutMs = options.timeoutMs ?? 15000;
    this.batchSize = Math.min(options.batchSize ?? 20, MAX_BATCH);
    this.flushIntervalMs = options.flushIntervalMs ?? 2000;
    this.uid = options.uid || persistentUid();
    this._fixedSid = Boolean(options.sid);
    this.sid = options.sid || sessionId();
    /** The reqid of the last successful search. */
    this.lastQueryId = null;
    this._fetch = options.fetch || globalThis.fetch.bind(globalThis);
    this._auth = options.accessKey && options.secretKey
      ? `Basic ${base64(`${options.accessKey}:${options.secretKey}`)}` : null;
    this._queue = [];
    this._timer = null;
    this._onHide = null;
    if (options.autoFlushOnHide !== false && typeof addEventListener === 'function'
        && typeof document !== 'undefined') {
      this._onHide = (e) => {
        if (e.type === 'pagehide' || document.visibilityState === 'hidden') this.flush({ beacon: true });
      };
      addEventListener('pagehide', this._onHide);
      document.addEventListener('visibilitychange', this._onHide);
    }
  }

  /** The tracker code: the app key, with the placement when there is one. */
  get code() {
    return this.placement ? `${this.appKey}:${this.placement}` : this.appKey;
  }

  /**
   * Visually similar items to the indexed item `imName`.
   * @param {string} imName
   * @param {SearchParams} [params]
   * @returns {Promise<SearchResponse>}
   */
  search(imName, params = {}) {
    return this._get('/search', { ...params, im_name: imName });
  }

  /**
   * Items like an image: `image` (File/Blob/bytes), `im_url`, or the `im_id` an earlier
   * upload search answered (pages without uploading again). `box: [x1, y1, x2, y2]` for a region.
   * @param {SearchParams & {image?: Blob|ArrayBuffer|Uint8Array, im_url?: string, im_id?: string, box?: number[]}} params
   * @returns {Promise<SearchResponse>}
   */
  uploadSearch(params) {
    const { image, box, ...rest } = params || {};
    if (!image && !rest.im_url && !rest.im_id) {
      return Promise.reject(new TypeError('uploadSearch needs image, im_url or im_id'));
    }
    const form = new FormData();
    const fields = { ...this._va(), ...rest, box: Array.isArray(box) ? box.join(',') : box };
    for (const [k, v] of toPairs(fields)) form.append(k, v);
    if (image && !rest.im_id) {
      const blob = asBlob(image);
      form.append('image', blob, blob.name || 'image');
    }
    return this._request('POST', '/uploadsearch', [['access_key', this.appKey]], form);
  }

  /**
   * "You may also like": similar items without near-duplicates, diversified.
   * @param {string} imName
   * @param {SearchParams} [params]
   * @returns {Promise<SearchResponse>}
   */
  recommendation(imName, params = {}) {
    return this._get('/recommendation', { ...params, im_name: imName });
  }

  /**
   * Items by dominant colour: "RRGGBB", or several as ["RRGGBB:weight", ...].
   * @param {string|string[]} color
   * @param {SearchParams} [params]
   * @returns {Promise<SearchResponse>}
   */
  colorSearch(color, params = {}) {
    return this._get('/colorsearch', { ...params, color: Array.isArray(color) ? color : [color] });
  }

  /**
   * Queue a shopper event for the batch endpoint. Product events need `pid`; every one needs
   * `queryId` (the search's reqid): it defaults to the reqid carried to this page, else the
   * last search. `transaction` needs `value`.
   * @param {'product_view'|'product_click'|'add_to_cart'|'transaction'|string} action
   * @param {{queryId?: string, pid?: string, pos?: number, value?: number, currency?: string, [k: string]: *}} [props]
   * @returns {Object} the queued event
   */
  track(action, props = {}) {
    if (typeof action !== 'string' || !/^[A-Za-z0-9_.:-]{1,32}$/.test(action)) {
      throw new TypeError('action must be up to 32 of [A-Za-z0-9_.:-]');
    }
    const queryId = props.queryId || captureReqid() || this.lastQueryId;
    if (PRODUCT_ACTIONS.includes(action) && !props.pid) throw new TypeError(`pid is required for ${action}`);
    if ((PRODUCT_ACTIONS.includes(action) || action === 'transaction') && !queryId) {
      throw new TypeError(`queryId (a search's reqid) is required for ${action}`);
    }
    if (action === 'transaction' && (props.value === undefined || props.value === null)) {
      throw new TypeError('value is required for transaction');
    }
    this._touch();
    const event = { ...props, action, queryId, ts: props.ts || Date.now() };
    if (typeof location !== 'undefined' && !event.url) event.url = location.href.slice(0, 2048);
    this._queue.push(event);
    if (this._queue.length >= this.batchSize) this.flush();
    else this._schedule();
    return event;
  }

  /**
   * Send the queued events now: by fetch (resolves to the server's answer), or with
   * `{beacon: true}` by navigator.sendBeacon, which survives the page being left.
   * @param {{beacon?: boolean}} [options]
   * @returns {Promise<Object|null>} the answer `{status, result, error}`, null when nothing was sent by fetch
   */
  flush(options = {}) {
    clearTimeout(this._timer);
    this._timer = null;
    const answers = [];
    while (this._queue.length) {
      const events = this._queue.splice(0, MAX_BATCH);
      answers.push(this._sendBatch(events, options.beacon));
    }
    return Promise.all(answers).then((all) => {
      const sent = all.filter(Boolean);
      if (!sent.length) return null;
      if (sent.length === 1) return sent[0];
      return { status: sent.every((a) => a.status === 'OK') ? 'OK' : 'warning',
        result: sent.flatMap((a) => a.result || []), error: sent.flatMap((a) => a.error || []) };
    });
  }

  /** Send what is queued and stop listening for page hide (a Node script's last call). */
  async close() {
    if (this._onHide) {
      removeEventListener('pagehide', this._onHide);
      document.removeEventListener('visibilitychange', this._onHide);
      this._onHide = null;
    }
    return this.flush();
  }

  /** Events waiting to be sent. */
  get pending() {
    return this._queue.length;
  }

  _schedule() {
    if (this._timer) return;
    this._timer = setTimeout(() => { this.flush().catch(() => {}); }, this.flushIntervalMs);
    // A Node script must not be kept alive just to wait for the flush timer.
    if (this._timer && typeof this._timer.unref === 'function') this._timer.unref();
  }

  _sendBatch(events, beacon) {
    const url = `${this.host}/v3/events?code=${encodeURIComponent(this.code)}`;
    // text/plain keeps it a CORS "simple" request (no preflight); the endpoint reads JSON anyway.
    const body = JSON.stringify({ uid: this.uid, sid: this.sid, sdk: SDK_NAME, v: VERSION, events });
    if (beacon && typeof navigator !== 'undefined' && typeof navigator.sendBeacon === 'function') {
      if (navigator.sendBeacon(url, new Blob([body], { type: 'text/plain;charset=UTF-8' }))) {
        return Promise.resolve(null);
      }
    }
    return this._fetch(url, {
      method: 'POST', body, keepalive: body.length < 60000,
      headers: { 'Content-Type': 'text/plain;charset=UTF-8' },
    }).then((r) => r.json()).catch((err) => {
      // Tracking never breaks a page: the batch is logged and dropped.
      if (typeof console !== 'undefined') console.warn('magpie: tracking batch not sent', err);
      return { status: 'fail', result: [], error: [{ error_message: String(err) }] };
    });
  }

  _va() {
    this._touch();
    return { va_uid: this.uid, va_sid: this.sid };
  }

  _touch() {
    // Activity keeps the session alive; after 30 idle minutes sessionId() starts a new one.
    if (!this._fixedSid) this.sid = sessionId(Date.now(), this.sid);
  }

  _get(path, params) {
    return this._request('GET', path, toPairs({ ...this._va(), ...params, access_key: this.appKey }));
  }

  async _request(method, path, pairs, body) {
    const url = `${this.host}${path}?${new URLSearchParams(pairs)}`;
    const headers = { Accept: 'application/json' };
    if (this._auth) headers.Authorization = this._auth;
    const controller = typeof AbortController === 'function' ? new AbortController() : null;
    const timer = controller && setTimeout(() => controller.abort(), this.timeoutMs);
    let response;
    try {
      response = await this._fetch(url, { method, headers, body, signal: controller && controller.signal });
    } catch (err) {
      throw new MagpieError(`${path.slice(1)}: request failed: ${err && err.message}`, { method: path.slice(1) });
    } finally {
      if (timer) clearTimeout(timer);
    }
    let json;
    try {
      json = await response.json();
    } catch {
      throw new MagpieError(`${path.slice(1)}: HTTP ${response.status} without a JSON answer`,
        { status: response.status, method: path.slice(1) });
    }
    // Error envelopes carry no reqid: the request id is always in the X-Log-ID header.
    if (!json.reqid && response.headers.get('X-Log-ID')) json.reqid = response.headers.get('X-Log-ID');
    if (!response.ok || json.status !== 'OK') {
      const errors = Array.isArray(json.error) ? json.error : [json.error].filter(Boolean);
      const text = errors.map((e) => (typeof e === 'string' ? e : e.message || e.error_message || JSON.stringify(e)));
      throw new MagpieError(text.join('; ') || `HTTP ${response.status}`,
        { status: response.status, errors, method: json.method, reqid: json.reqid });
    }
    this.lastQueryId = json.reqid;
    return json;
  }
}

/**
 * A client (see ClientOptions).
 * @param {ClientOptions} options
 * @returns {MagpieClient}
 */
export function createClient(options) {
  return new MagpieClient(options);
}
