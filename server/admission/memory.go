package admission

import (
	"bufio"
	"os"
	"strconv"
	"strings"
)

// DefaultBudget is a quarter of the memory this process may use: the
// smaller of the machine's memory and its cgroup's limit. The rest is left
// for the models (ONNX Runtime's sessions and arenas), the Go runtime and
// the garbage collector's headroom. It falls back to DefaultMemoryBudget
// when neither can be read.
func DefaultBudget() int64 {
	m := SystemMemory()
	if m <= 0 {
		return DefaultMemoryBudget
	}
	return max(m/4, 256<<20)
}

// SystemMemory is the memory available to this process in bytes, 0 when
// unknown.
func SystemMemory() int64 {
	total := memTotal()
	for _, f := range []string{"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"} {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
		if err == nil && n > 0 && (total == 0 || n < total) {
			total = n
		}
	}
	return total
}

func memTotal() int64 {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "MemTotal:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			if err == nil {
				return kb << 10
			}
		}
	}
	return 0
}
