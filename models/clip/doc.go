// Package clip serves CLIP ViT-B/32 (the Xenova/clip-vit-base-patch32 ONNX
// export) as two registry models, one per tower, each batched by its own
// scheduler:
//
//   - task "clip-vision": pixel_values FP32 [B,3,224,224] -> image_embeds
//     FP32 [B,512]; other outputs are allowed and ignored.
//   - task "clip-text": input_ids INT64 [B,T] and, optionally,
//     attention_mask INT64 [B,T] -> text_embeds FP32 [B,512].
//
// Both checks read names and shapes from the session, so a file that does
// not fit fails at load with a message naming what it has.
//
// Clients name the pair by the vision model's name ("clip-vit-b32"); its
// configuration names the text model with the option text_model:
//
//	models:
//	  - name: clip-vit-b32
//	    task: clip-vision
//	    options: {text_model: clip-vit-b32-text}
//	  - name: clip-vit-b32-text
//	    task: clip-text
//
// Naming the text model directly gives a text-only pair. The tokenizer
// (vocab.json + merges.txt) and the image preprocessing
// (preprocessor_config.json) of the export are embedded, so tokenising works
// whenever the binary exists, with or without weights. The option
// tokenizer_dir, on the text model (or the vision model), loads the tokenizer
// from a folder instead (tokenizer.json, or vocab.json + merges.txt).
//
// Images are resized so the shortest edge is 224 (PIL bicubic), centre
// cropped to 224x224, rescaled by 1/255 and normalised with CLIP's mean and
// std, as Hugging Face's CLIPImageProcessor does. Texts are framed with
// <|startoftext|> ... <|endoftext|>, truncated to 77 tokens and padded to 77
// with the attention mask, so texts of any length share a batch. Every
// embedding comes back L2-normalised.
package clip
