// Package tokenizer implements the byte-level BPE tokenizers of the CLIP
// text encoder and the GPT-2 caption decoder, matching Hugging Face's
// CLIPTokenizerFast and GPT2TokenizerFast (the Rust tokenizers crate) id for
// id.
//
// Both are loaded from a model folder holding either tokenizer.json or
// vocab.json + merges.txt (LoadCLIPDir, LoadGPT2Dir, or LoadCLIP/LoadGPT2 on
// an fs.FS). A tokenizer.json is checked against the pipeline implemented
// here and refused if it asks for anything else.
//
// Equality with Hugging Face is tested against goldens in testdata/, made by
// scripts/dev/tokenizer-goldens from the real tokenizer.json files with the
// official Rust-backed `tokenizers` npm package. Regenerate them after
// changing the model files or the reference version:
//
//	cd scripts/dev/tokenizer-goldens && npm ci && node generate.mjs
//
// Input that is not valid UTF-8 (which Python and Rust strings cannot hold)
// is not rejected: each invalid byte is treated as a punctuation-like
// character and encoded as that byte.
package tokenizer
