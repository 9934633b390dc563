package gpu

/*
#include <dlfcn.h>
#include <stdio.h>
#include <string.h>

// The CUDA driver API and NVML, loaded at run time: the server is one binary
// for CPU and GPU hosts, and a CPU host has neither library. Only stable
// entry points with plain C signatures are used.
typedef int CUresult;
typedef int CUdevice;
typedef CUresult (*cuInit_fn)(unsigned int);
typedef CUresult (*cuDriverGetVersion_fn)(int *);
typedef CUresult (*cuDeviceGetCount_fn)(int *);
typedef CUresult (*cuDeviceGet_fn)(CUdevice *, int);
typedef CUresult (*cuDeviceGetName_fn)(char *, int, CUdevice);
typedef CUresult (*cuDeviceTotalMem_fn)(size_t *, CUdevice);
typedef CUresult (*cuDeviceGetAttribute_fn)(int *, int, CUdevice);
typedef CUresult (*cuDeviceGetPCIBusId_fn)(char *, int, CUdevice);
typedef CUresult (*cuGetErrorName_fn)(CUresult, const char **);

typedef int nvmlReturn_t;
typedef void *nvmlDevice_t;
typedef struct { unsigned long long total, free, used; } nvmlMemory_t;
typedef nvmlReturn_t (*nvmlInit_fn)(void);
typedef nvmlReturn_t (*nvmlShutdown_fn)(void);
typedef nvmlReturn_t (*nvmlDeviceGetHandleByPciBusId_fn)(const char *, nvmlDevice_t *);
typedef nvmlReturn_t (*nvmlDeviceGetMemoryInfo_fn)(nvmlDevice_t, nvmlMemory_t *);

enum { CC_MAJOR = 75, CC_MINOR = 76 };

typedef struct {
	int stage;            // 0 ok; 1 no libcuda.so.1; 2 a driver call failed
	char failed[48];      // which call
	int cu_err;
	char cu_err_name[64];
	char dlerr[512];
	int driver_version;   // e.g. 13000 for CUDA 13.0
	int count;
	char name[256];
	unsigned long long total;
	int cc_major, cc_minor;
	char pci[32];
	int have_free;
	unsigned long long free_mem;
} gpu_info;

static void *sym(void *h, const char *name, gpu_info *out) {
	void *p = dlsym(h, name);
	if (p == NULL) {
		out->stage = 2;
		snprintf(out->failed, sizeof out->failed, "dlsym %s", name);
	}
	return p;
}

static int check(CUresult r, const char *call, cuGetErrorName_fn errname, gpu_info *out) {
	if (r == 0) return 0;
	out->stage = 2;
	out->cu_err = r;
	snprintf(out->failed, sizeof out->failed, "%s", call);
	const char *n = NULL;
	if (errname != NULL && errname(r, &n) == 0 && n != NULL) {
		snprintf(out->cu_err_name, sizeof out->cu_err_name, "%s", n);
	}
	return -1;
}

// describe_device fills out for CUDA device ordinal (as CUDA numbers them,
// after CUDA_VISIBLE_DEVICES). libcuda stays loaded: the CUDA provider loads
// it again moments later.
static void describe_device(int ordinal, gpu_info *out) {
	memset(out, 0, sizeof *out);
	void *cu = dlopen("libcuda.so.1", RTLD_LAZY | RTLD_GLOBAL);
	if (cu == NULL) {
		const char *e = dlerror();
		out->stage = 1;
		snprintf(out->dlerr, sizeof out->dlerr, "%s", e ? e : "libcuda.so.1 not found");
		return;
	}
	cuGetErrorName_fn errname = (cuGetErrorName_fn)dlsym(cu, "cuGetErrorName");
	cuInit_fn init = (cuInit_fn)sym(cu, "cuInit", out);
	cuDriverGetVersion_fn version = (cuDriverGetVersion_fn)sym(cu, "cuDriverGetVersion", out);
	cuDeviceGetCount_fn count = (cuDeviceGetCount_fn)sym(cu, "cuDeviceGetCount", out);
	cuDeviceGet_fn get = (cuDeviceGet_fn)sym(cu, "cuDeviceGet", out);
	cuDeviceGetName_fn name = (cuDeviceGetName_fn)sym(cu, "cuDeviceGetName", out);
	cuDeviceTotalMem_fn total = (cuDeviceTotalMem_fn)sym(cu, "cuDeviceTotalMem_v2", out);
	cuDeviceGetAttribute_fn attr = (cuDeviceGetAttribute_fn)sym(cu, "cuDeviceGetAttribute", out);
	cuDeviceGetPCIBusId_fn pci = (cuDeviceGetPCIBusId_fn)sym(cu, "cuDeviceGetPCIBusId", out);
	if (out->stage != 0) return;

	if (check(init(0), "cuInit", errname, out)) return;
	if (check(version(&out->driver_version), "cuDriverGetVersion", errname, out)) return;
	if (check(count(&out->count), "cuDeviceGetCount", errname, out)) return;
	if (ordinal >= out->count) return;
	CUdevice dev;
	size_t bytes = 0;
	if (check(get(&dev, ordinal), "cuDeviceGet", errname, out)) return;
	if (check(name(out->name, sizeof out->name, dev), "cuDeviceGetName", errname, out)) return;
	if (check(total(&bytes, dev), "cuDeviceTotalMem", errname, out)) return;
	out->total = bytes;
	if (check(attr(&out->cc_major, CC_MAJOR, dev), "cuDeviceGetAttribute", errname, out)) return;
	if (check(attr(&out->cc_minor, CC_MINOR, dev), "cuDeviceGetAttribute", errname, out)) return;
	if (pci(out->pci, sizeof out->pci, dev) != 0) out->pci[0] = 0;

	// Free memory needs a CUDA context, which would take memory itself;
	// NVML reads it without one. NVML numbers devices by PCI bus, not as
	// CUDA does, hence the lookup by bus id. It is optional.
	void *nvml = dlopen("libnvidia-ml.so.1", RTLD_LAZY | RTLD_LOCAL);
	if (nvml == NULL || out->pci[0] == 0) return;
	nvmlInit_fn ninit = (nvmlInit_fn)dlsym(nvml, "nvmlInit_v2");
	nvmlShutdown_fn nshut = (nvmlShutdown_fn)dlsym(nvml, "nvmlShutdown");
	nvmlDeviceGetHandleByPciBusId_fn byBus = (nvmlDeviceGetHandleByPciBusId_fn)dlsym(nvml, "nvmlDeviceGetHandleByPciBusId_v2");
	nvmlDeviceGetMemoryInfo_fn mem = (nvmlDeviceGetMemoryInfo_fn)dlsym(nvml, "nvmlDeviceGetMemoryInfo");
	if (ninit != NULL && nshut != NULL && byBus != NULL && mem != NULL && ninit() == 0) {
		nvmlDevice_t d;
		nvmlMemory_t m;
		if (byBus(out->pci, &d) == 0 && mem(d, &m) == 0) {
			out->have_free = 1;
			out->free_mem = m.free;
		}
		nshut();
	}
	dlclose(nvml);
}
*/
import "C"

import (
	"fmt"
	"os"
)

// Device is one GPU as the CUDA driver reports it.
type Device struct {
	Ordinal           int    // CUDA's number for it (cuda:N), after CUDA_VISIBLE_DEVICES
	Name              string // e.g. "NVIDIA H200"
	TotalMemory       uint64 // bytes
	FreeMemory        uint64 // bytes; 0 when NVML is absent and it is unknown
	ComputeCapability string // e.g. "9.0"
	PCIBusID          string
	DriverCUDA        string // the newest CUDA version the driver supports, e.g. "13.0"
	driverVersion     int
}

func (d Device) String() string {
	s := fmt.Sprintf("cuda:%d %s, %s", d.Ordinal, d.Name, gib(d.TotalMemory))
	if d.FreeMemory > 0 {
		s += fmt.Sprintf(" (%s free)", gib(d.FreeMemory))
	}
	return s + fmt.Sprintf(", compute capability %s, driver for CUDA %s", d.ComputeCapability, d.DriverCUDA)
}

func gib(n uint64) string { return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30)) }

// describe asks the CUDA driver about device ordinal.
func describe(ordinal int) (Device, error) {
	var info C.gpu_info
	C.describe_device(C.int(ordinal), &info)
	switch info.stage {
	case 1:
		return Device{}, &Missing{Library: "libcuda.so.1", Why: C.GoString(&info.dlerr[0]), Install: driverHint}
	case 2:
		why := C.GoString(&info.failed[0])
		if info.cu_err != 0 {
			why += fmt.Sprintf(" returned %s (%d)", C.GoString(&info.cu_err_name[0]), int(info.cu_err))
		}
		return Device{}, fmt.Errorf("the NVIDIA driver cannot use a GPU: %s%s", why, visibleNote())
	}
	if int(info.count) <= ordinal {
		return Device{}, fmt.Errorf("cuda:%d asked for, but the NVIDIA driver sees %d GPU(s)%s", ordinal, int(info.count), visibleNote())
	}
	v := int(info.driver_version)
	d := Device{
		Ordinal:           ordinal,
		Name:              C.GoString(&info.name[0]),
		TotalMemory:       uint64(info.total),
		ComputeCapability: fmt.Sprintf("%d.%d", int(info.cc_major), int(info.cc_minor)),
		PCIBusID:          C.GoString(&info.pci[0]),
		DriverCUDA:        fmt.Sprintf("%d.%d", v/1000, v%1000/10),
		driverVersion:     v,
	}
	if info.have_free != 0 {
		d.FreeMemory = uint64(info.free_mem)
	}
	return d, nil
}

func visibleNote() string {
	if v, ok := os.LookupEnv("CUDA_VISIBLE_DEVICES"); ok {
		return fmt.Sprintf(" (CUDA_VISIBLE_DEVICES=%q)", v)
	}
	return ""
}
