// Calls imgserve's OpenAI-shaped image routes with OpenAI's official Node
// SDK, the way an application would, and prints what came back. Run by
// hand against a running server (README.md); it exits non-zero when a
// check fails.
import OpenAI, { toFile } from 'openai';
import { createHash } from 'node:crypto';
import { deflateSync, inflateSync } from 'node:zlib';

const baseURL = process.env.IMGSERVE_URL ?? 'http://127.0.0.1:18400/v1';
const model = process.env.IMGSERVE_MODEL ?? 'sd-turbo';
// imgserve asks for no key; the SDK insists on one.
const client = new OpenAI({ baseURL, apiKey: 'unused', maxRetries: 0 });

let failed = 0;
function check(ok, what) {
  console.log(`${ok ? 'ok  ' : 'FAIL'} ${what}`);
  if (!ok) failed++;
}
const sha = (buf) => createHash('sha256').update(buf).digest('hex').slice(0, 16);

// PNG size from the IHDR chunk.
function pngSize(buf) {
  return [buf.readUInt32BE(16), buf.readUInt32BE(20)];
}

// A minimal RGBA PNG writer (for the mask; Node has no image library).
const crcTable = new Int32Array(256).map((_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c;
});
function crc32(buf) {
  let c = -1;
  for (const b of buf) c = crcTable[(c ^ b) & 0xff] ^ (c >>> 8);
  return (c ^ -1) >>> 0;
}
function chunk(type, data) {
  const out = Buffer.alloc(12 + data.length);
  out.writeUInt32BE(data.length, 0);
  out.write(type, 4, 'latin1');
  data.copy(out, 8);
  out.writeUInt32BE(crc32(out.subarray(4, 8 + data.length)), 8 + data.length);
  return out;
}
function encodePNG(w, h, rgba) {
  const raw = Buffer.alloc((4 * w + 1) * h);
  for (let y = 0; y < h; y++) rgba.copy(raw, y * (4 * w + 1) + 1, y * 4 * w, (y + 1) * 4 * w);
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(w, 0);
  ihdr.writeUInt32BE(h, 4);
  ihdr.set([8, 6, 0, 0, 0], 8);
  return Buffer.concat([Buffer.from([137, 80, 78, 71, 13, 10, 26, 10]), chunk('IHDR', ihdr),
    chunk('IDAT', deflateSync(raw)), chunk('IEND', Buffer.alloc(0))]);
}
// Reads back the RGB(A) pixels of the PNGs imgserve writes (8-bit, no
// interlace, filter Up or None), to compare pixels outside the mask.
function decodePNG(buf) {
  const [w, h] = pngSize(buf);
  const bpp = buf[25] === 6 ? 4 : 3;
  const idat = [];
  for (let o = 8; o < buf.length;) {
    const n = buf.readUInt32BE(o), type = buf.toString('latin1', o + 4, o + 8);
    if (type === 'IDAT') idat.push(buf.subarray(o + 8, o + 8 + n));
    o += 12 + n;
  }
  const raw = inflateSync(Buffer.concat(idat));
  const px = Buffer.alloc(w * h * bpp);
  for (let y = 0; y < h; y++) {
    const f = raw[y * (w * bpp + 1)];
    for (let x = 0; x < w * bpp; x++) {
      let v = raw[y * (w * bpp + 1) + 1 + x];
      if (f === 2 && y > 0) v = (v + px[(y - 1) * w * bpp + x]) & 0xff;
      else if (f !== 0 && f !== 2) throw new Error(`PNG filter ${f} not handled here`);
      px[y * w * bpp + x] = v;
    }
  }
  return { w, h, bpp, px };
}

// 1. images.generate, two images with a seed.
const gen = await client.images.generate({
  model, prompt: 'a lighthouse on a cliff at dusk', n: 2, size: '512x512', response_format: 'b64_json', seed: 1234,
});
const pngs = gen.data.map((d) => Buffer.from(d.b64_json, 'base64'));
console.log('images.generate:', JSON.stringify({ created: gen.created, model: gen.model, size: gen.size,
  output_format: gen.output_format, data: gen.data.map((d, i) => ({ index: d.index, seed: d.seed, bytes: pngs[i].length, sha256: sha(pngs[i]) })) }));
check(pngs.length === 2 && pngs.every((p) => pngSize(p).join('x') === '512x512'), 'generate: two 512x512 PNGs');
const again = await client.images.generate({ model, prompt: 'a lighthouse on a cliff at dusk', n: 1, size: '512x512', seed: 1234 });
check(Buffer.from(again.data[0].b64_json, 'base64').equals(pngs[0]), 'generate: the same seed gives the same bytes');
const other = await client.images.generate({ model, prompt: 'a lighthouse on a cliff at dusk', size: '768x512', seed: 99 });
const otherPng = Buffer.from(other.data[0].b64_json, 'base64');
check(pngSize(otherPng).join('x') === '768x512' && !otherPng.equals(pngs[0]), 'generate: 768x512, another seed, another image');

// 2. images.edit with the first image and a mask: transparent = edit.
const [w, h] = pngSize(pngs[0]);
const mask = Buffer.alloc(w * h * 4, 255);
for (let y = 128; y < 384; y++) for (let x = 128; x < 384; x++) mask[(y * w + x) * 4 + 3] = 0;
const edit = await client.images.edit({
  model, prompt: 'a red door', image: await toFile(pngs[0], 'in.png', { type: 'image/png' }),
  mask: await toFile(encodePNG(w, h, mask), 'mask.png', { type: 'image/png' }), seed: 7, strength: 0.5, steps: 2,
});
const edited = Buffer.from(edit.data[0].b64_json, 'base64');
console.log('images.edit:', JSON.stringify({ size: edit.size, steps: edit.steps, data: edit.data.map((d) => ({ index: d.index, seed: d.seed, bytes: edited.length, sha256: sha(edited) })) }));
const a = decodePNG(pngs[0]), b = decodePNG(edited);
let outside = 0, inside = 0;
for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) {
  const inMask = x >= 128 && x < 384 && y >= 128 && y < 384;
  let same = true;
  for (let c = 0; c < 3; c++) same &&= a.px[(y * w + x) * a.bpp + c] === b.px[(y * w + x) * b.bpp + c];
  if (!inMask && !same) outside++;
  if (inMask && !same) inside++;
}
check(outside === 0 && inside > 0, `edit: ${inside} pixels inside the mask changed, ${outside} outside`);

// 3. Streaming: progress events, then the image.
const stream = await client.images.generate({ model, prompt: 'a lighthouse on a cliff at dusk', size: '512x512', seed: 1234, steps: 3, stream: true });
const types = [];
let streamed;
for await (const ev of stream) {
  types.push(ev.type + (ev.step ? ` ${ev.step}/${ev.steps}` : ''));
  if (ev.type === 'image_generation.completed') streamed = Buffer.from(ev.b64_json, 'base64');
}
console.log('images.generate stream events:', JSON.stringify(types));
check(types.length === 4 && streamed && pngSize(streamed).join('x') === '512x512', 'stream: 3 progress events and the image');

// 4. The NSFW guard: the synthetic checker flags images whose top-left
// corner is red; "red red" flags some seeds, "red red red red" every image.
const some = await client.images.generate({ model, prompt: 'red red', n: 8, size: '128x128', seed: 100 });
console.log('withheld (some):', JSON.stringify({ returned: some.data.map((d) => d.index), withheld: some.withheld }));
check(some.data.length > 0 && some.withheld?.length > 0 && some.data.length + some.withheld.length === 8, 'guard: some images withheld, the others returned');
for (const [what, call] of [
  ['generate, every image flagged', () => client.images.generate({ model, prompt: 'red red red red', size: '128x128' })],
  ['edit, every image flagged', async () => client.images.edit({ model, prompt: 'red red red red', image: await toFile(pngs[0], 'in.png', { type: 'image/png' }) })],
  ['generate, blocked prompt', () => client.images.generate({ model, prompt: 'a nude figure' })],
]) {
  try {
    await call();
    check(false, `${what}: no error`);
  } catch (e) {
    console.log(`${what}:`, e.constructor.name, e.status, JSON.stringify(e.error));
    check(e instanceof OpenAI.BadRequestError && ['content_filtered', 'content_policy_violation'].includes(e.code), `${what}: BadRequestError ${e.code}`);
  }
}
const flaggedStream = await client.images.generate({ model, prompt: 'red red red red', size: '128x128', stream: true });
const ftypes = [];
for await (const ev of flaggedStream) ftypes.push(ev.type);
console.log('flagged stream events:', JSON.stringify(ftypes));
check(ftypes.at(-1) === 'image_generation.withheld' && !ftypes.includes('image_generation.completed'), 'stream: the flagged image is withheld');

console.log(failed ? `${failed} check(s) FAILED` : 'all checks passed');
process.exit(failed ? 1 : 0);
