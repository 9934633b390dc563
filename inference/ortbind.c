#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ortbind.h"

static const OrtApi *api;

static char *message(const char *format, const char *detail) {
	size_t n = strlen(format) + (detail ? strlen(detail) : 0) + 1;
	char *m = malloc(n);
	if (m != NULL) snprintf(m, n, format, detail ? detail : "");
	return m;
}

static char *status(OrtStatus *st) {
	if (st == NULL) return NULL;
	char *m = strdup(api->GetErrorMessage(st));
	api->ReleaseStatus(st);
	return m;
}

// The library is already loaded by onnxruntime_go; RTLD_NOLOAD finds that
// copy rather than loading a second one.
char *ob_init(const char *library) {
	void *h = dlopen(library, RTLD_LAZY | RTLD_NOLOAD);
	if (h == NULL) return message("ONNX Runtime is not loaded from %s", library);
	const OrtApiBase *(*get)(void) = (const OrtApiBase *(*)(void))dlsym(h, "OrtGetApiBase");
	if (get == NULL) {
		dlclose(h);
		return message("no OrtGetApiBase in %s", library);
	}
	api = get()->GetApi(ORT_API_VERSION);
	dlclose(h);
	if (api == NULL) return message("%s does not serve ONNX Runtime C API version 24", library);
	return NULL;
}

char *ob_memory_info(const char *name, int device, OrtMemoryInfo **out) {
	return status(api->CreateMemoryInfo(name, OrtArenaAllocator, device, OrtMemTypeDefault, out));
}

void ob_release_memory_info(OrtMemoryInfo *info) { api->ReleaseMemoryInfo(info); }

char *ob_allocator(OrtSession *session, const OrtMemoryInfo *info, OrtAllocator **out) {
	return status(api->CreateAllocator(session, info, out));
}

void ob_release_allocator(OrtAllocator *allocator) { api->ReleaseAllocator(allocator); }

char *ob_binding(OrtSession *session, OrtIoBinding **out) { return status(api->CreateIoBinding(session, out)); }

void ob_release_binding(OrtIoBinding *binding) { api->ReleaseIoBinding(binding); }

char *ob_bind_input(OrtIoBinding *binding, const char *name, const OrtValue *value) {
	return status(api->BindInput(binding, name, value));
}

char *ob_bind_output_to(OrtIoBinding *binding, const char *name, const OrtMemoryInfo *info) {
	return status(api->BindOutputToDevice(binding, name, info));
}

// The synchronisations make inputs copied in before the run visible to it,
// and the outputs complete when it returns (CUDA runs on its own stream).
char *ob_run(OrtSession *session, OrtIoBinding *binding) {
	char *err = status(api->SynchronizeBoundInputs(binding));
	if (err == NULL) err = status(api->RunWithBinding(session, NULL, binding));
	if (err == NULL) err = status(api->SynchronizeBoundOutputs(binding));
	return err;
}

char *ob_outputs(OrtIoBinding *binding, OrtValue **values, size_t n) {
	OrtAllocator *alloc = NULL;
	char *err = status(api->GetAllocatorWithDefaultOptions(&alloc));
	if (err != NULL) return err;
	OrtValue **got = NULL;
	size_t count = 0;
	err = status(api->GetBoundOutputValues(binding, alloc, &got, &count));
	if (err != NULL) return err;
	for (size_t i = 0; i < count; i++) {
		if (i < n) {
			values[i] = got[i];
		} else {
			api->ReleaseValue(got[i]);
		}
	}
	if (count > 0) {
		OrtStatus *st = api->AllocatorFree(alloc, got);
		if (st != NULL) api->ReleaseStatus(st);
	}
	if (count != n) {
		for (size_t i = 0; i < count && i < n; i++) {
			api->ReleaseValue(values[i]);
			values[i] = NULL;
		}
		return message("the binding returned a different number of outputs than were bound%s", "");
	}
	return NULL;
}

char *ob_host_tensor(const OrtMemoryInfo *info, void *data, size_t len, const int64_t *shape, size_t rank, int type, OrtValue **out) {
	return status(api->CreateTensorWithDataAsOrtValue(info, data, len, shape, rank, (ONNXTensorElementDataType)type, out));
}

char *ob_alloc_tensor(OrtAllocator *allocator, const int64_t *shape, size_t rank, int type, OrtValue **out) {
	return status(api->CreateTensorAsOrtValue(allocator, shape, rank, (ONNXTensorElementDataType)type, out));
}

// type_and_shape reads an element type and up to max_rank dimensions.
static char *type_and_shape(const OrtTensorTypeAndShapeInfo *info, int *type, int64_t *dims, size_t max_rank, size_t *rank) {
	ONNXTensorElementDataType t;
	char *err = status(api->GetTensorElementType(info, &t));
	if (err == NULL) err = status(api->GetDimensionsCount(info, rank));
	if (err == NULL && *rank > max_rank) err = message("tensor of too many dimensions%s", "");
	if (err == NULL) err = status(api->GetDimensions(info, dims, *rank));
	if (err == NULL) *type = (int)t;
	return err;
}

char *ob_tensor_info(OrtValue *value, int *type, int64_t *dims, size_t max_rank, size_t *rank, void **data) {
	OrtTensorTypeAndShapeInfo *info = NULL;
	char *err = status(api->GetTensorTypeAndShape(value, &info));
	if (err != NULL) return err;
	err = type_and_shape(info, type, dims, max_rank, rank);
	api->ReleaseTensorTypeAndShapeInfo(info);
	if (err != NULL) return err;
	return status(api->GetTensorMutableData(value, data));
}

void ob_release_value(OrtValue *value) { api->ReleaseValue(value); }

char *ob_info_session(const void *model, size_t len, const char *dir, OrtSession **out) {
	// The process has one environment; CreateEnv hands back that one.
	OrtEnv *env = NULL;
	char *err = status(api->CreateEnv(ORT_LOGGING_LEVEL_ERROR, "imgserve", &env));
	if (err != NULL) return err;
	OrtSessionOptions *opts = NULL;
	err = status(api->CreateSessionOptions(&opts));
	if (err == NULL) err = status(api->SetIntraOpNumThreads(opts, 1));
	if (err == NULL && dir != NULL)
		err = status(api->AddSessionConfigEntry(opts, "session.model_external_initializers_file_folder_path", dir));
	if (err == NULL) err = status(api->CreateSessionFromArray(env, model, len, opts, out));
	if (opts != NULL) api->ReleaseSessionOptions(opts);
	api->ReleaseEnv(env);
	return err;
}

void ob_release_session(OrtSession *session) { api->ReleaseSession(session); }

char *ob_io_count(OrtSession *session, size_t *inputs, size_t *outputs) {
	char *err = status(api->SessionGetInputCount(session, inputs));
	if (err == NULL) err = status(api->SessionGetOutputCount(session, outputs));
	return err;
}

char *ob_io(OrtSession *session, int output, size_t i, char **name, int *type, int64_t *dims, size_t max_rank, size_t *rank) {
	OrtAllocator *alloc = NULL;
	char *err = status(api->GetAllocatorWithDefaultOptions(&alloc));
	if (err != NULL) return err;
	char *n = NULL;
	err = status(output ? api->SessionGetOutputName(session, i, alloc, &n) : api->SessionGetInputName(session, i, alloc, &n));
	if (err != NULL) return err;
	*name = strdup(n);
	err = status(api->AllocatorFree(alloc, n));
	if (err != NULL) return err;
	OrtTypeInfo *ti = NULL;
	err = status(output ? api->SessionGetOutputTypeInfo(session, i, &ti) : api->SessionGetInputTypeInfo(session, i, &ti));
	if (err != NULL) return err;
	const OrtTensorTypeAndShapeInfo *info = NULL;
	err = status(api->CastTypeInfoToTensorInfo(ti, &info));
	*type = 0;
	*rank = 0;
	if (err == NULL && info != NULL) err = type_and_shape(info, type, dims, max_rank, rank);
	api->ReleaseTypeInfo(ti);
	return err;
}

// The CUDA runtime, for copies and page-locked memory, from the same
// libcudart the CUDA provider loaded.
typedef int (*cuda_set_device_fn)(int);
typedef int (*cuda_memcpy_fn)(void *, const void *, size_t, int);
typedef int (*cuda_sync_fn)(void);
typedef int (*cuda_host_alloc_fn)(void **, size_t, unsigned int);
typedef int (*cuda_free_host_fn)(void *);
typedef const char *(*cuda_error_fn)(int);

static struct {
	pthread_once_t once;
	char *err;
	cuda_set_device_fn set_device;
	cuda_memcpy_fn memcpy;
	cuda_sync_fn sync;
	cuda_host_alloc_fn host_alloc;
	cuda_free_host_fn free_host;
	cuda_error_fn error;
} cudart = {PTHREAD_ONCE_INIT};

static void load_cudart(void) {
	void *h = dlopen("libcudart.so.13", RTLD_LAZY | RTLD_NOLOAD);
	if (h == NULL) h = dlopen("libcudart.so.13", RTLD_LAZY);
	if (h == NULL) {
		cudart.err = message("libcudart.so.13: %s", dlerror());
		return;
	}
	cudart.set_device = (cuda_set_device_fn)dlsym(h, "cudaSetDevice");
	cudart.memcpy = (cuda_memcpy_fn)dlsym(h, "cudaMemcpy");
	cudart.sync = (cuda_sync_fn)dlsym(h, "cudaDeviceSynchronize");
	cudart.host_alloc = (cuda_host_alloc_fn)dlsym(h, "cudaHostAlloc");
	cudart.free_host = (cuda_free_host_fn)dlsym(h, "cudaFreeHost");
	cudart.error = (cuda_error_fn)dlsym(h, "cudaGetErrorString");
	if (!cudart.set_device || !cudart.memcpy || !cudart.sync || !cudart.host_alloc || !cudart.free_host || !cudart.error) {
		cudart.err = message("libcudart.so.13 lacks a CUDA runtime function%s", "");
	}
}

static char *cuda_ready(void) {
	pthread_once(&cudart.once, load_cudart);
	return cudart.err ? strdup(cudart.err) : NULL;
}

static char *cuda_status(int rc, const char *call) {
	if (rc == 0) return NULL;
	char buf[256];
	snprintf(buf, sizeof buf, "%s: %s", call, cudart.error(rc));
	return strdup(buf);
}

enum { cudaMemcpyDefault = 4, cudaHostAllocPortable = 1 };

char *ob_copy(int device, void *dst, const void *src, size_t n) {
	if (n == 0) return NULL;
	if (device < 0) {
		memcpy(dst, src, n);
		return NULL;
	}
	char *err = cuda_ready();
	// The device is set on the calling thread, in the same call as the
	// copy: Go moves goroutines between threads. cudaMemcpyDefault lets
	// unified addressing tell which side is which. A copy from pageable
	// host memory may return before the device has the data, and ONNX
	// Runtime's stream does not wait for the default one: hence the
	// device synchronisation.
	if (err == NULL) err = cuda_status(cudart.set_device(device), "cudaSetDevice");
	if (err == NULL) err = cuda_status(cudart.memcpy(dst, src, n, cudaMemcpyDefault), "cudaMemcpy");
	if (err == NULL) err = cuda_status(cudart.sync(), "cudaDeviceSynchronize");
	return err;
}

char *ob_pinned_alloc(size_t n, void **out) {
	char *err = cuda_ready();
	if (err == NULL) err = cuda_status(cudart.host_alloc(out, n, cudaHostAllocPortable), "cudaHostAlloc");
	return err;
}

char *ob_pinned_free(void *p) {
	char *err = cuda_ready();
	if (err == NULL) err = cuda_status(cudart.free_host(p), "cudaFreeHost");
	return err;
}
