// The official `visearch-javascript-sdk` (npm, unmodified) under Node against a live Magpie:
// only the endpoints change. Input from the environment; one JSON report on stdout.
const fs = require('node:fs');

const visearch = require(process.env.VISEARCH_SDK);
const host = `${process.env.MAGPIE_HOST}/`;
visearch.set('app_key', process.env.APP_KEY);
visearch.set('endpoint', host);
visearch.set('track_end_point', host);
visearch.set('timeout', 30000);

// The SDK answers through callbacks: (params, options, callback, failure).
const call = (method, params) => new Promise((resolve, reject) => {
  visearch[method](params, {}, resolve, reject);
});

(async () => {
  const out = {};
  out.search = await call('search', { im_name: 's3', limit: 5, fl: ['brand', 'price'], score: true,
    fq: ['brand:Nike OR Adidas'] });
  out.uploadFile = await call('uploadsearch', {
    // Under Node the SDK posts with the form-data package, which takes strings, not booleans.
    image: { files: [fs.createReadStream(process.env.IMAGE_PATH)] }, limit: 3, score: 'true' });
  out.uploadPage2 = await call('uploadsearch', { im_id: out.uploadFile.im_id, limit: 3, page: 2 });
  out.uploadUrl = await call('uploadsearch', { im_url: `${process.env.IMAGES_URL}/s6.png`, limit: 3 });
  out.recommendation = await call('recommendation', { im_name: 's0', limit: 20 });
  out.color = await call('colorsearch', { color: 'dc141e', limit: 3 });
  out.unknown = await call('search', { im_name: 'no-such-item' });
  // The SDK's own click tracking: the legacy pixel with the search's reqid.
  visearch.send({ reqid: out.search.reqid, im_name: out.search.result[0].im_name, action: 'click' });
  await new Promise((resolve) => setTimeout(resolve, 500)); // the pixel is fire-and-forget
  fs.writeFileSync(process.env.OUT_PATH, JSON.stringify(out));
  // The SDK never clears its per-call timeout timers: they would hold Node for 30 s more.
  process.exit(0);
})().catch((err) => {
  console.error('scenario failed:', err);
  process.exit(1);
});
