// Package models holds the model registry and one pipeline per model family.
// It knows tensors and images, never HTTP.
package models

import (
	"bytes"
	_ "embed"
	"fmt"
	"io"
	"os"
	"regexp"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/imgserve/imgserve/inference"
)

//go:embed defaults.yaml
var defaultConfig []byte

// Config is the model configuration file: which models to serve and how to
// schedule them.
type Config struct {
	Models []ModelConfig `yaml:"models"`
}

// ModelConfig describes one served model.
type ModelConfig struct {
	// Name is what clients call the model.
	Name string `yaml:"name"`
	// File is the model's file name inside --models-dir, or an absolute
	// path. Anyone may drop in a compatible file; it is checked by
	// signature, not checksum.
	File string `yaml:"file"`
	// Fetch is the fetch-models.sh item that provides File (default Name).
	Fetch string `yaml:"fetch"`
	// Task is the pipeline: "tensor" serves raw tensors over KServe v2 only.
	Task string `yaml:"task"`
	// IntraOpThreads per run. 0 (the default) is elastic: a run alone in
	// the process uses every core, a run beside others cores/instances.
	IntraOpThreads int `yaml:"intra_op_threads"`
	// DynamicBatch allows rewriting a fixed batch dimension of 1 into a
	// dynamic one when MaxBatchSize > 1. The rewrite is verified at load.
	DynamicBatch *bool `yaml:"dynamic_batch"`
	// ResizeRewrite (default true) gives Resize nodes sized at run time
	// constant scales at load where that is exact, so that ONNX Runtime
	// keeps them in its fast CPU layout (inference.Runtime.RewriteResizes).
	// Outputs move by float rounding only; false serves the export as is.
	ResizeRewrite *bool `yaml:"resize_rewrite"`
	// Outputs restricts the session to these outputs (default: all).
	Outputs []string `yaml:"outputs"`
	// Spin lets ONNX Runtime threads busy-wait between runs.
	Spin bool `yaml:"spin"`
	// WideSpin (default true) lets an elastic model's lone runs, on every
	// core, busy-wait inside the run, never after it, while the host's CPUs
	// are free (inference.SessionOptions.WideSpin).
	WideSpin *bool    `yaml:"wide_spin"`
	Batching Batching `yaml:"batching"`
	// GPUBatching replaces Batching when the server runs on a GPU, where
	// larger batches pay (default: Batching).
	GPUBatching *Batching `yaml:"gpu_batching"`
	// MaxInputBytes bounds the inputs of one client request over KServe
	// (HTTP or gRPC); 0 takes inference.DefaultMaxInputBytes (32 MiB), or
	// what the model's fixed inputs need at its largest batch if more.
	MaxInputBytes int64 `yaml:"max_input_bytes"`
	// Options are task-specific settings, read by the task's pipeline (for
	// example a caption encoder names its decoder).
	Options map[string]string `yaml:"options"`
}

// Batching is the YAML form of inference.BatchConfig.
type Batching struct {
	MaxBatchSize        int           `yaml:"max_batch_size"`
	MaxQueueDelay       time.Duration `yaml:"max_queue_delay"`
	PreferredBatchSizes []int         `yaml:"preferred_batch_sizes"`
	MaxQueueSize        int           `yaml:"max_queue_size"`
	Instances           int           `yaml:"instances"`
	// BatchBuckets pad batches to fixed sizes (see inference.BatchConfig);
	// on a GPU they default to powers of two up to max_batch_size.
	BatchBuckets []int `yaml:"batch_buckets"`
	// MaxQueueWait is the model's load-shedding budget; absent takes the
	// server's --queue-wait-budget, 0 turns shedding off.
	MaxQueueWait *time.Duration `yaml:"max_queue_wait"`
}

// BatchConfig converts to the scheduler's policy.
func (b Batching) BatchConfig() inference.BatchConfig {
	return inference.BatchConfig{
		MaxBatchSize:        b.MaxBatchSize,
		MaxQueueDelay:       b.MaxQueueDelay,
		PreferredBatchSizes: b.PreferredBatchSizes,
		MaxQueueSize:        b.MaxQueueSize,
		Instances:           b.Instances,
		BatchBuckets:        b.BatchBuckets,
		MaxQueueWait:        derefDuration(b.MaxQueueWait),
	}
}

func derefDuration(d *time.Duration) time.Duration {
	if d == nil {
		return 0
	}
	return *d
}

// BatchingFor is the batching a model gets on a device: on a GPU its
// gpu_batching when it has one, with batches padded to buckets, powers of
// two up to max_batch_size unless it names its own.
func (mc ModelConfig) BatchingFor(d inference.Device) Batching {
	if !d.CUDA {
		return mc.Batching
	}
	b := mc.Batching
	if mc.GPUBatching != nil {
		b = *mc.GPUBatching
	}
	if len(b.BatchBuckets) == 0 && b.MaxBatchSize > 1 {
		b.BatchBuckets = inference.PowerOfTwoBuckets(b.MaxBatchSize)
	}
	return b
}

// normalise fills in defaults and checks the values.
func (b *Batching) normalise() error {
	b.MaxBatchSize = max(b.MaxBatchSize, 1)
	b.Instances = max(b.Instances, 1)
	if b.MaxQueueSize <= 0 {
		b.MaxQueueSize = 64
	}
	if b.MaxQueueDelay < 0 {
		return fmt.Errorf("negative max_queue_delay")
	}
	if b.MaxQueueWait != nil && *b.MaxQueueWait < 0 {
		return fmt.Errorf("negative max_queue_wait")
	}
	for _, n := range b.BatchBuckets {
		if n < 1 || n > b.MaxBatchSize {
			return fmt.Errorf("batch_buckets %v: each must be 1 to max_batch_size %d", b.BatchBuckets, b.MaxBatchSize)
		}
	}
	return nil
}

// DefaultConfig is the embedded configuration used without --config.
func DefaultConfig() (Config, error) {
	return ParseConfig(bytes.NewReader(defaultConfig))
}

// LoadConfig reads a YAML file, or the embedded defaults when path is "".
func LoadConfig(path string) (Config, error) {
	if path == "" {
		return DefaultConfig()
	}
	f, err := os.Open(path)
	if err != nil {
		return Config{}, err
	}
	defer f.Close()
	cfg, err := ParseConfig(f)
	if err != nil {
		return Config{}, fmt.Errorf("%s: %w", path, err)
	}
	return cfg, nil
}

var validName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`)

// ParseConfig decodes and checks a configuration. Unknown keys are errors, so
// a typo does not silently fall back to a default.
func ParseConfig(r io.Reader) (Config, error) {
	var cfg Config
	dec := yaml.NewDecoder(r)
	dec.KnownFields(true)
	if err := dec.Decode(&cfg); err != nil {
		return Config{}, fmt.Errorf("parsing model config: %w", err)
	}
	seen := map[string]bool{}
	for i := range cfg.Models {
		m := &cfg.Models[i]
		if !validName.MatchString(m.Name) {
			return Config{}, fmt.Errorf("model %d: bad name %q", i, m.Name)
		}
		if seen[m.Name] {
			return Config{}, fmt.Errorf("model %q configured twice", m.Name)
		}
		seen[m.Name] = true
		if m.File == "" {
			return Config{}, fmt.Errorf("model %q: no file", m.Name)
		}
		if m.Task == "" {
			m.Task = TaskTensor
		}
		if !knownTask(m.Task) {
			return Config{}, fmt.Errorf("model %q: unknown task %q", m.Name, m.Task)
		}
		if m.Fetch == "" {
			m.Fetch = m.Name
		}
		if m.DynamicBatch == nil {
			yes := true
			m.DynamicBatch = &yes
		}
		if m.ResizeRewrite == nil {
			yes := true
			m.ResizeRewrite = &yes
		}
		if err := m.Batching.normalise(); err != nil {
			return Config{}, fmt.Errorf("model %q: batching: %w", m.Name, err)
		}
		if m.GPUBatching != nil {
			if err := m.GPUBatching.normalise(); err != nil {
				return Config{}, fmt.Errorf("model %q: gpu_batching: %w", m.Name, err)
			}
		}
		if m.MaxInputBytes < 0 {
			return Config{}, fmt.Errorf("model %q: negative max_input_bytes", m.Name)
		}
		m.IntraOpThreads = max(m.IntraOpThreads, 0)
	}
	return cfg, nil
}

// SessionOptions are the ONNX Runtime settings of m's session on a machine
// with this many cores, for the given number of instances. An explicit intra_op_threads is used as is; the
// default gives a lone run every core and, when the model has several
// instances, a run beside others its share (inference.SessionOptions'
// NarrowThreads).
func (m ModelConfig) SessionOptions(cores, instances int) inference.SessionOptions {
	so := inference.SessionOptions{IntraOpThreads: m.IntraOpThreads, Spin: m.Spin, Outputs: m.Outputs}
	if so.IntraOpThreads <= 0 {
		so.IntraOpThreads = max(1, cores)
		so.NarrowThreads = max(1, cores/max(1, instances))
		so.WideSpin = m.WideSpin == nil || *m.WideSpin
	}
	return so
}
