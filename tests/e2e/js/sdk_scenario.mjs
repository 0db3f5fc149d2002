// The Magpie JS SDK under Node against a live server. Input from the environment, one JSON
// report on stdout for tests/e2e/test_js_sdk.py to assert on.
import { readFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';

const env = process.env;
const sdk = await import(pathToFileURL(env.MAGPIE_SDK).href);
const { createClient, quoteFq, MagpieError } = sdk;

const client = createClient({ appKey: env.APP_KEY, host: env.MAGPIE_HOST, batchSize: 100 });
const out = { uid: client.uid, sid: client.sid };

const found = await client.search('s3', { limit: 5, fl: ['brand', 'price', 'title'], score: true,
  fq: { brand: `${quoteFq("Women's shoes")} OR Nike` } });
out.search = found;

const image = new Blob([readFileSync(env.IMAGE_PATH)], { type: 'image/png' });
const upload = await client.uploadSearch({ image, limit: 3, score: true, facets: '*' });
out.upload = upload;
out.uploadPage2 = await client.uploadSearch({ im_id: upload.im_id, limit: 3, page: 2 });
out.byUrl = await client.uploadSearch({ im_url: `${env.IMAGES_URL}/s6.png`, limit: 3 });
out.recommendation = await client.recommendation('s0', { limit: 20 });
out.color = await client.colorSearch('dc141e', { limit: 3, score: true });
out.lastQueryId = client.lastQueryId;
// A server-side script with the full keys (HTTP Basic), as a catalog tool would use them:
// the app key given is no key at all, so only Basic auth can let the search through.
const full = createClient({ appKey: 'not-an-app-key', host: env.MAGPIE_HOST, accessKey: env.ACCESS_KEY,
  secretKey: env.SECRET_KEY });
out.fullKeys = await full.recommendation('s4', { limit: 2 });

try {
  await client.search('no-such-item');
  out.unknown = 'no error';
} catch (err) {
  out.unknown = { isMagpieError: err instanceof MagpieError, message: err.message, reqid: err.reqid };
}
try {
  client.track('product_click', { queryId: found.reqid, pos: 1 });
  out.noPid = 'no error';
} catch (err) {
  out.noPid = err.message;
}

const q = found.reqid;
found.result.slice(0, 3).forEach((item, i) => client.track('product_view', { queryId: q, pid: item.im_name, pos: i + 1 }));
client.track('product_click', { queryId: q, pid: found.result[1].im_name, pos: 2 });
client.track('add_to_cart', { queryId: q, pid: found.result[1].im_name, price: 25, currency: 'EUR' });
client.track('transaction', { queryId: q, value: 25, currency: 'EUR', transId: 'order-1' });
out.pendingBeforeFlush = client.pending;
out.flush = await client.flush();

// Batching: a full batch goes by itself, and so does a partial one after flushIntervalMs.
const small = createClient({ appKey: env.APP_KEY, host: env.MAGPIE_HOST, batchSize: 2,
  flushIntervalMs: 50, uid: client.uid, sid: client.sid });
small.track('search', { queryId: upload.reqid });
out.pendingAfterOne = small.pending;
small.track('search', { queryId: out.byUrl.reqid });
out.pendingAfterTwo = small.pending;
small.track('search', { queryId: out.color.reqid });
await new Promise((resolve) => setTimeout(resolve, 400));
out.pendingAfterInterval = small.pending;
await small.close();

process.stdout.write(JSON.stringify(out));
