// Package caption describes images in one sentence with a ViT-GPT2
// encoder-decoder (the Xenova/vit-gpt2-image-captioning ONNX export of
// nlpconnect/vit-gpt2-image-captioning), served as two registry models:
//
//   - task "caption-encoder": pixel_values FP32 [B,3,H,W] ->
//     last_hidden_state FP32 [B,S,E]. Batched across requests by the
//     registry's scheduler like any image model.
//   - task "caption-decoder": the merged decoder: input_ids INT64 [B,T],
//     encoder_hidden_states FP32 [B,S,E], past_key_values.{i}.{key,value}
//     FP32 [B,H,P,D] for every layer i, use_cache_branch BOOL [1] ->
//     logits FP32 [B,T,V] and present.{i}.{key,value} [B,H,P+T,D].
//
// Both checks read names and shapes from the session: the layer count, the
// heads and the head size come from the past_key_values declarations, and a
// file that does not fit fails at load with a message naming what it has.
//
// Clients name a caption model by its encoder ("vit-gpt2"), whose options
// name the decoder:
//
//	models:
//	  - name: vit-gpt2
//	    task: caption-encoder
//	    options: {decoder: vit-gpt2-decoder}
//	  - name: vit-gpt2-decoder
//	    task: caption-decoder
//	    options: {decode_batch_size: "16"}
//	    batching: {max_batch_size: 1, max_queue_delay: 2ms, max_queue_size: 64, instances: 1}
//
// The export's tokenizer (vocab.json + merges.txt) and configs are embedded
// (assets/); the encoder's option `assets` names a folder to read them from
// instead (tokenizer.json or vocab.json + merges.txt, generation_config.json,
// preprocessor_config.json, and optionally config.json and
// tokenizer_config.json).
//
// Images are resized to the preprocessor config's size with its PIL filter
// (224x224 bilinear), rescaled by 1/255 and normalised with its mean and std
// (0.5, 0.5), as transformers' ViTImageProcessor does. Decoding starts from
// decoder_start_token_id, is greedy or a beam search (transformers' rules,
// length_penalty and early_stopping from generation_config.json), and stops
// at EOS or after max_new_tokens; the caption is decoded with special tokens
// skipped, tokenisation spaces cleaned up as tokenizer_config.json says, and
// trimmed.
//
// Decode steps of all requests to one decoder are batched by this package's
// continuous batcher (see batcher), not by the registry's scheduler: the
// decoder model keeps max_batch_size 1 in the registry, and its options set
// decode_batch_size, the rows of one step (gpu_decode_batch_size overrides
// it on a GPU, where the gpu_batching block replaces batching). Its batching block's
// max_queue_delay is how long a new group of requests waits for company
// before its first step, max_queue_size how many captions may wait or decode
// at once (more get inference.ErrQueueFull), and instances how many steps may
// run at once. The batcher reports each step's rows and each caption to the
// observer named DecodeLabel(decoder), "vit-gpt2-decoder/decode".
//
// Nothing here logs: captions are user data.
package caption
