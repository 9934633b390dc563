// Generates golden token ids for models/tokenizer from Hugging Face's own
// tokenizer implementations, loaded from the real tokenizer.json files.
//
//   cd scripts/dev/tokenizer-goldens && npm ci && node generate.mjs
//
// The reference is the official Rust-backed `tokenizers` package (the same
// Rust crate that backs transformers' *TokenizerFast classes). The pure-JS
// `@huggingface/tokenizers` port is only used as a cross-check; where the two
// disagree the Rust output is written and the disagreement is recorded.
//
// Environment: MODELS_DIR (default <repo>/models/tokenizer/testdata, which
// holds clip/tokenizer.json and caption/tokenizer.json), OUT_DIR (default
// <repo>/models/tokenizer/testdata).

import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import { Tokenizer as RustTokenizer } from 'tokenizers';
import { Tokenizer as JsTokenizer } from '@huggingface/tokenizers';

const here = dirname(fileURLToPath(import.meta.url));
const repoRoot = resolve(here, '../../..');
const modelsDir = process.env.MODELS_DIR ?? join(repoRoot, 'models/tokenizer/testdata');
const outDir = process.env.OUT_DIR ?? join(repoRoot, 'models/tokenizer/testdata');

// Read versions from node_modules rather than package.json so the goldens
// name what actually ran (and `exports` maps hide package.json from require).
const pkgVersion = (name) =>
  JSON.parse(readFileSync(join(here, 'node_modules', name, 'package.json'), 'utf8')).version;
const REFERENCE = `tokenizers@${pkgVersion('tokenizers')}`;
const CROSSCHECK = `@huggingface/tokenizers@${pkgVersion('@huggingface/tokenizers')}`;

const CLIP_MAX = 77;

// ---------------------------------------------------------------------------
// Deterministic string list.

// mulberry32: tiny seeded PRNG so the list is identical on every run.
function rng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const categories = {
  english: [
    'Hello world',
    'The quick brown fox jumps over the lazy dog.',
    'a photo of a cat',
    'a photo of a dog',
    'A photo of a CAT sitting on a red sofa.',
    'a man riding a horse on the beach',
    'Two people are walking down a busy city street at night.',
    'a bowl of fruit on a wooden table',
    'an aerial view of a mountain lake surrounded by pine trees',
    'A close-up of a yellow flower with a bee on it',
    'a black and white photograph of an old train station',
    'a diagram of the human heart',
    'This is a test.',
    'Supercalifragilisticexpialidocious',
    'antidisestablishmentarianism and pneumonoultramicroscopicsilicovolcanoconiosis',
    'GPT-2 and CLIP use byte-level BPE.',
    'ALL CAPS SENTENCE WITH SHOUTING',
    'MiXeD CaSe WoRdS',
    'camelCaseIdentifier and snake_case_identifier',
    'a',
    'I',
    'x',
  ],
  punctuation: [
    '!!!',
    '...',
    '?!?!',
    'Wait... what?!',
    '-- em dash -- and en dash – and em — dash',
    '(parenthesised) [bracketed] {braced} <angled>',
    '@#$%^&*()_+-=[]{}|;:\'",.<>/?`~',
    'e-mail me at someone@example.com',
    'https://example.com/path?query=1&b=2#frag',
    'U.S.A. vs. U.K.',
    'C++ and C# and F#',
    '#hashtag @user',
    'def f(x): return x**2  # comment',
    'if (a && b) { return !c; }',
    '"quoted" and \'single quoted\'',
    '«guillemets» „German quotes“ “curly” ‘single’',
    '¡Hola! ¿Qué tal?',
    '.,;:',
    '----------',
    '**bold** _italic_ `code`',
    '<div class="x">html</div>',
    '\\backslash\\ and /slash/',
  ],
  digits: [
    '1',
    '12',
    '123',
    '1234',
    '1234567890',
    '3.14159',
    '1,000,000',
    '2024-01-01',
    'v1.2.3',
    '100%',
    '$5.99',
    '0x1F',
    '12345678901234567890123456789012345678901234567890',
    'Room 101, floor 7, building 42',
    '١٢٣٤ Arabic-Indic digits',
    '²³ superscripts and ½ ¼ fractions',
    'Ⅻ roman numeral and ① circled',
    '９９ fullwidth digits',
    '1st 2nd 3rd 4th',
    '-42 +7 3e10 1e-5',
  ],
  contractions: [
    "it's",
    "don't",
    "they're",
    "we've",
    "I'm",
    "you'll",
    "he'd",
    "It's a dog's life, isn't it?",
    "I'd've thought you'll've known",
    "IT'S",
    "DON'T",
    "I'M",
    "WE'VE THEY'RE YOU'LL HE'D",
    "'S",
    "'s",
    "'t're've'm'll'd",
    'it’s',
    'don’t',
    'we’re',
    "it''s",
    "rock 'n' roll",
    "o'clock",
    "y'all",
    "'twas the night",
    "the students' books",
    "' s",
    "'",
    "''",
    "'sa 'tb 'rec",
  ],
  unicode: [
    'café',
    'naïve résumé',
    'Zürich',
    'São Paulo',
    'Ångström',
    'Straße',
    'İstanbul',
    'ΟΔΟΣ',
    'Σίσυφος',
    'ὈΔΥΣΣΕΎΣ',
    '日本語のテキスト',
    '中文分词测试',
    '한국어 텍스트',
    'مرحبا بالعالم',
    'Привет, мир!',
    'שלום עולם',
    'हिन्दी भाषा',
    'ภาษาไทย',
    'Ελληνικά',
    'ქართული',
    'cafe\u0301',
    'e\u0301',
    'n\u0303',
    'q\u0307',
    '\u212b',
    '\u00c5',
    'A\u030a',
    'ﬁ ligature',
    'ＡＢＣ fullwidth',
    'Ⓐ circled',
    'zero\u200bwidth',
    'zw\u200cnj and zw\u200dj',
    '\ufeffBOM',
    'ǅ titlecase',
    'ẞ capital sharp s',
    'Ꙋ',
    '𝔘𝔫𝔦𝔠𝔬𝔡𝔢 math',
    '\u0000nul',
    'bell\u0007',
    'del\u007f',
    'x\u00adsoft hyphen',
    'a\u0300\u0301\u0302\u0303 stacked marks',
    '\u0301leading mark',
  ],
  emoji: [
    '😀',
    'I love 🍕!',
    '👍🏽',
    '👨‍👩‍👧‍👦',
    '🏳️‍🌈',
    '🇺🇸',
    '🇯🇵🇫🇷🇩🇪',
    '❤️',
    '1️⃣',
    '🧑🏿‍🚀',
    '😀😃😄😁😆',
    'emoji🙂inside',
    '🐱 cat 🐶 dog',
    '©®™',
    '★☆✓✗',
  ],
  whitespace: [
    '  leading spaces',
    'trailing spaces  ',
    'a\tb',
    'a\nb',
    'a\n\nb',
    'a  b',
    '   ',
    ' ',
    '\t',
    '\n',
    ' \n ',
    'a \t\n b',
    'word \n',
    'x\r\ny',
    'a\u000bb',
    'a\u000cb',
    'non\u00a0breaking',
    'ideo\u3000space',
    'nel\u0085next',
    'line\u2028sep',
    'para\u2029sep',
    'en\u2002space',
    'mongolian\u180evowel',
    '\t\ttabs\t\t',
    '\n\n\nnewlines\n\n\n',
    'multiple     spaces     inside',
    // Oniguruma's \s (used by the Rust crate) includes U+0085 but not
    // U+FEFF or U+200B; JavaScript's is the other way round for the first
    // two. Only runs of them next to spaces tell the definitions apart.
    'a\u0085\u0085b',
    'a \u0085b',
    'a\u0085 b',
    'x\ufeff\ufeffy',
    'x \ufeff y',
    'a\u00a0\u00a0b',
    'a \u00a0b',
    'a\u00a0 b',
    '\u200b \u200b',
    'a\u180e b',
    'a \u3000 b',
    '\u2028\u2029',
    'end \u0085',
  ],
  special: [
    '<|endoftext|>',
    'hello<|endoftext|>world',
    '<|endoftext|><|endoftext|>',
    ' <|endoftext|> ',
    'a caption<|endoftext|>',
    '<|ENDOFTEXT|>',
    '<|startoftext|>a photo',
    '<|STARTOFTEXT|>',
    '<|startoftext|><|endoftext|>',
    '<|endoftext',
    'endoftext|>',
    '<|endoftext|>\n<|endoftext|>',
    '!<|startoftext|>',
    '<|endoftext |>',
  ],
};

function longTexts() {
  const para =
    'A large group of people gathered in the town square to watch the annual ' +
    'parade, which featured colourful floats, marching bands, dancers in ' +
    'elaborate costumes, and a giant inflatable dragon that wound its way ' +
    'slowly through the narrow streets while children cheered from the ' +
    "balconies above. It was, by all accounts, the city's best festival in years.";
  return [
    para,
    para + ' ' + para,
    'a '.repeat(200).trim(),
    'a'.repeat(500),
    'ab'.repeat(300),
    '7'.repeat(300),
    '😀'.repeat(60),
    '日本語'.repeat(50),
    'word, '.repeat(90),
    'Привет мир '.repeat(40),
    '!?'.repeat(150),
    ('the cat sat on the mat. ').repeat(20),
  ];
}

function buildStrings() {
  const out = [''];
  for (const list of Object.values(categories)) out.push(...list);
  out.push(...longTexts());
  // NFD forms of everything with a precomposed character, so NFC
  // normalisation is exercised on both sides.
  for (const s of categories.unicode) {
    const d = s.normalize('NFD');
    if (d !== s) out.push(d);
  }
  const r = rng(20240601);
  const pick = (a) => a[Math.floor(r() * a.length)];
  const pools = Object.values(categories);
  const seps = [' ', '', '  ', '\n', '\t', ' \n', ', '];
  for (let i = 0; i < 160; i++) {
    const n = 2 + Math.floor(r() * 5);
    const parts = [];
    for (let j = 0; j < n; j++) {
      let frag = pick(pick(pools));
      // Case changes and stray whitespace at the edges are where the
      // normaliser and the whitespace rules of the regexes differ most.
      const x = r();
      if (x < 0.15) frag = frag.toUpperCase();
      else if (x < 0.25) frag = ' ' + frag;
      else if (x < 0.3) frag = frag + ' ';
      parts.push(frag);
      if (j < n - 1) parts.push(pick(seps));
    }
    out.push(parts.join(''));
  }
  // Deduplicate, keeping the first occurrence so the order is stable.
  return [...new Set(out)];
}

// transformers' PreTrainedTokenizerBase.clean_up_tokenization, applied by
// GPT2TokenizerFast.decode because the caption model's tokenizer_config.json
// sets clean_up_tokenization_spaces=true.
function cleanUp(s) {
  return s
    .replaceAll(' .', '.')
    .replaceAll(' ?', '?')
    .replaceAll(' !', '!')
    .replaceAll(' ,', ',')
    .replaceAll(" ' ", "'")
    .replaceAll(" n't", "n't")
    .replaceAll(" 'm", "'m")
    .replaceAll(" 's", "'s")
    .replaceAll(" 've", "'ve")
    .replaceAll(" 're", "'re");
}

// ---------------------------------------------------------------------------

function loadJs(dir) {
  const tj = JSON.parse(readFileSync(join(dir, 'tokenizer.json'), 'utf8'));
  const tc = JSON.parse(readFileSync(join(dir, 'tokenizer_config.json'), 'utf8'));
  // The caption tokenizer.json carries a Fixed(32) padding/truncation left
  // over from export; transformers resets both per call, so drop them.
  tj.truncation = null;
  tj.padding = null;
  return new JsTokenizer(tj, tc);
}

function sameIds(a, b) {
  return a.length === b.length && a.every((v, i) => v === b[i]);
}

function writeGolden(file, meta, sections) {
  // One entry per line keeps diffs of regenerated goldens readable.
  const parts = Object.entries(sections).map(([key, list]) =>
    `  "${key}": [\n${list.map((e) => '    ' + JSON.stringify(e)).join(',\n')}\n  ]`);
  const head = JSON.stringify(meta, null, 2).replace(/\n}$/, '');
  const text = `${head},\n${parts.join(',\n')}\n}\n`;
  JSON.parse(text); // fail loudly rather than commit a broken file
  writeFileSync(file, text);
  const counts = Object.entries(sections).map(([k, l]) => `${l.length} ${k}`).join(', ');
  console.log(`wrote ${file}: ${counts}, ${text.length} bytes`);
}

async function clip(strings) {
  const dir = join(modelsDir, 'clip');
  const full = RustTokenizer.fromFile(join(dir, 'tokenizer.json'));
  full.disableTruncation();
  full.disablePadding();
  const trunc = RustTokenizer.fromFile(join(dir, 'tokenizer.json'));
  trunc.setTruncation(CLIP_MAX);
  trunc.disablePadding();
  const padded = RustTokenizer.fromFile(join(dir, 'tokenizer.json'));
  padded.setTruncation(CLIP_MAX);
  padded.setPadding({ maxLength: CLIP_MAX, padId: 49407, padToken: '<|endoftext|>' });
  const js = loadJs(dir);

  const entries = [];
  const disagreements = [];
  for (const text of strings) {
    const ids = (await full.encode(text, null, { addSpecialTokens: true })).getIds();
    const t = (await trunc.encode(text, null, { addSpecialTokens: true })).getIds();
    // Padding is not stored per entry (it is pure filler); check here that
    // the reference pads the way the Go tests assume: pad id 49407, mask 0.
    const p = await padded.encode(text, null, { addSpecialTokens: true });
    const pids = p.getIds();
    const mask = p.getAttentionMask();
    if (pids.length !== CLIP_MAX || !sameIds(pids.slice(0, t.length), t) ||
        pids.slice(t.length).some((v) => v !== 49407) ||
        mask.some((m, i) => m !== (i < t.length ? 1 : 0))) {
      throw new Error(`unexpected CLIP padding for ${JSON.stringify(text)}`);
    }
    const e = { text, ids };
    if (!sameIds(ids, t)) e.ids_truncated = t;
    entries.push(e);

    const jids = js.encode(text).ids;
    if (!sameIds(ids, jids)) {
      disagreements.push({ text, reference: ids, crosscheck: jids });
    }
  }
  const meta = {
    tokenizer: 'clip',
    source: 'Xenova/clip-vit-base-patch32 tokenizer.json',
    reference: REFERENCE,
    generator: 'scripts/dev/tokenizer-goldens/generate.mjs',
    notes: 'ids: add_special_tokens=true, no truncation. ids_truncated (only when it differs): truncation max_length=77, keeping <|endoftext|>. Padding to 77 uses id 49407 with attention mask 0 (checked by the generator).',
    crosscheck: CROSSCHECK,
  };
  writeGolden(join(outDir, 'clip_goldens.json'), meta, { crosscheck_disagreements: disagreements, entries });
  return disagreements;
}

async function gpt2(strings) {
  const dir = join(modelsDir, 'caption');
  const rust = RustTokenizer.fromFile(join(dir, 'tokenizer.json'));
  rust.disableTruncation();
  rust.disablePadding();
  const js = loadJs(dir);

  const entries = [];
  const disagreements = [];
  for (const text of strings) {
    const ids = (await rust.encode(text, null, { addSpecialTokens: true })).getIds();
    const decoded = await rust.decode(ids, false);
    const skip = await rust.decode(ids, true);
    const e = { text, ids, decoded };
    if (skip !== decoded) e.decoded_skip_special = skip;
    const clean = cleanUp(decoded);
    if (clean !== decoded) e.decoded_clean = clean;
    e.roundtrip = decoded === text;
    entries.push(e);

    const jids = js.encode(text).ids;
    // The JS port refuses to decode an empty list; the Rust one returns ''.
    const jsDecode = (clean) =>
      ids.length === 0 ? '' : js.decode(ids, { skip_special_tokens: false, clean_up_tokenization_spaces: clean });
    const jdec = jsDecode(false);
    const jclean = jsDecode(true);
    if (!sameIds(ids, jids) || jdec !== decoded || jclean !== clean) {
      disagreements.push({ text, reference: ids, crosscheck: jids, decode_differs: jdec !== decoded || jclean !== clean });
    }
  }

  // Decoding of id sequences that encode never produces: split multi-byte
  // characters, lone continuation bytes, random ids, the special token.
  const r = rng(777);
  const decodeCases = [];
  const addCase = async (ids) => {
    const c = { ids, decoded: await rust.decode(ids, false) };
    const skip = await rust.decode(ids, true);
    if (skip !== c.decoded) c.decoded_skip_special = skip;
    decodeCases.push(c);
  };
  for (const s of ['😀', '👨‍👩‍👧‍👦', '日本語', 'café', '🇯🇵', 'Привет']) {
    const ids = (await rust.encode(s, null, { addSpecialTokens: true })).getIds();
    for (let n = 1; n <= ids.length; n++) await addCase(ids.slice(0, n));
    for (let n = 1; n < ids.length; n++) await addCase(ids.slice(n));
  }
  // Single byte tokens covering every leading/continuation byte class.
  const byteTok = JSON.parse(readFileSync(join(dir, 'vocab.json'), 'utf8'));
  const byteId = (b) => byteTok[bytesToUnicode()[b]];
  for (const seq of [[0xf0], [0x80], [0xc3], [0xc3, 0x28], [0xe2, 0x82], [0xe2, 0x82, 0x28], [0xf0, 0x9f, 0x98],
    [0xf0, 0x9f, 0x98, 0x28], [0xed, 0xa0, 0x80], [0xc0, 0xaf], [0xf5, 0x80], [0xff], [0xe0, 0x80, 0x80],
    [0xf4, 0x90, 0x80, 0x80], [0x80, 0x80, 0x80], [0x61, 0xf0, 0x9f, 0x61]]) {
    await addCase(seq.map(byteId));
  }
  await addCase([50256]);
  await addCase([464, 50256, 3797]);
  for (let i = 0; i < 60; i++) {
    const n = 1 + Math.floor(r() * 12);
    const ids = [];
    for (let j = 0; j < n; j++) ids.push(r() < 0.05 ? 50256 : Math.floor(r() * 50257));
    await addCase(ids);
  }
  for (const c of decodeCases) {
    const jdec = js.decode(c.ids, { skip_special_tokens: false, clean_up_tokenization_spaces: false });
    if (jdec !== c.decoded) disagreements.push({ decode_ids: c.ids, reference: c.decoded, crosscheck: jdec });
  }

  const meta = {
    tokenizer: 'gpt2',
    source: 'Xenova/vit-gpt2-image-captioning tokenizer.json (its baked-in truncation/padding of 32 disabled)',
    reference: REFERENCE,
    generator: 'scripts/dev/tokenizer-goldens/generate.mjs',
    notes: 'ids: add_special_tokens=true (GPT-2 adds none). decoded: decode(ids, skip_special_tokens=false) without clean-up; decoded_skip_special / decoded_clean only when they differ from decoded. decoded_clean applies transformers clean_up_tokenization (tokenizer_config clean_up_tokenization_spaces=true). roundtrip: decoded == text.',
    crosscheck: CROSSCHECK,
  };
  writeGolden(join(outDir, 'gpt2_goldens.json'), meta, {
    crosscheck_disagreements: disagreements,
    entries,
    decode_cases: decodeCases,
  });
  return disagreements;
}

// GPT-2's byte-to-unicode table, needed to find the single-byte tokens.
function bytesToUnicode() {
  const bs = [];
  for (let b = 0x21; b <= 0x7e; b++) bs.push(b);
  for (let b = 0xa1; b <= 0xac; b++) bs.push(b);
  for (let b = 0xae; b <= 0xff; b++) bs.push(b);
  const cs = [...bs];
  let n = 0;
  for (let b = 0; b < 256; b++) {
    if (!bs.includes(b)) {
      bs.push(b);
      cs.push(256 + n++);
    }
  }
  const m = {};
  bs.forEach((b, i) => (m[b] = String.fromCodePoint(cs[i])));
  return m;
}

const strings = buildStrings();
console.log(`${strings.length} strings; reference ${REFERENCE}, cross-check ${CROSSCHECK}`);
const dc = await clip(strings);
const dg = await gpt2(strings);
for (const [name, d] of [['clip', dc], ['gpt2', dg]]) {
  console.log(`${name}: ${d.length} disagreement(s) between ${REFERENCE} and ${CROSSCHECK}`);
  for (const x of d) console.log('  ', JSON.stringify(x).slice(0, 300));
}
