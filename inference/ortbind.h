// A thin layer over the parts of ONNX Runtime's C API that onnxruntime_go
// v1.27.0 does not expose: I/O binding with outputs left in device memory,
// memory infos for CUDA memory, session allocators, and copies between host
// and device memory. Every function that can fail returns NULL on success
// or an error message the caller frees.
#ifndef IMGSERVE_ORTBIND_H
#define IMGSERVE_ORTBIND_H

#include <stddef.h>
#include <stdint.h>
#include "onnxruntime_c_api.h"

char *ob_init(const char *library);

char *ob_memory_info(const char *name, int device, OrtMemoryInfo **out);
void ob_release_memory_info(OrtMemoryInfo *info);
char *ob_allocator(OrtSession *session, const OrtMemoryInfo *info, OrtAllocator **out);
void ob_release_allocator(OrtAllocator *allocator);

char *ob_binding(OrtSession *session, OrtIoBinding **out);
void ob_release_binding(OrtIoBinding *binding);
char *ob_bind_input(OrtIoBinding *binding, const char *name, const OrtValue *value);
char *ob_bind_output_to(OrtIoBinding *binding, const char *name, const OrtMemoryInfo *info);
char *ob_run(OrtSession *session, OrtIoBinding *binding);
char *ob_outputs(OrtIoBinding *binding, OrtValue **values, size_t n);

char *ob_host_tensor(const OrtMemoryInfo *info, void *data, size_t len, const int64_t *shape, size_t rank, int type, OrtValue **out);
char *ob_alloc_tensor(OrtAllocator *allocator, const int64_t *shape, size_t rank, int type, OrtValue **out);
char *ob_tensor_info(OrtValue *value, int *type, int64_t *dims, size_t max_rank, size_t *rank, void **data);
void ob_release_value(OrtValue *value);

// A model's inputs and outputs, read from a temporary session loaded from
// memory with its external data (if any) in dir (NULL: none). onnxruntime_go
// has no way to pass that option when it loads from memory.
char *ob_info_session(const void *model, size_t len, const char *dir, OrtSession **out);
void ob_release_session(OrtSession *session);
char *ob_io_count(OrtSession *session, size_t *inputs, size_t *outputs);
// ob_io reads input (output 0) or output (output 1) i: its name (to free),
// ONNX element type (0 when it is not a tensor) and dimensions (-1 unknown).
char *ob_io(OrtSession *session, int output, size_t i, char **name, int *type, int64_t *dims, size_t max_rank, size_t *rank);

// Copies n bytes between host memory and the memory of device (a CUDA
// ordinal, or -1 for host memory on both sides).
char *ob_copy(int device, void *dst, const void *src, size_t n);
// Page-locked host memory, which the GPU reads by DMA without a staging
// copy.
char *ob_pinned_alloc(size_t n, void **out);
char *ob_pinned_free(void *p);

#endif
