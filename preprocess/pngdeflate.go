package preprocess

import (
	"encoding/binary"
	"math/bits"
	"slices"
)

// A deflate encoder made for PNG rows after the Up filter, after fpnge
// (github.com/veluca93/fpnge): no hash-chain match search, only runs of
// zero bytes (what the Up filter makes of transparent areas, flat colour
// and anything equal to the row above) coded as distance-1 copies, and
// every other byte a literal under one dynamic Huffman code built from the
// band's own histogram. Photos hold few other repeats after filtering, so
// files stay within a few percent of zlib's fastest levels, and zero runs
// cost almost nothing to find: 8 bytes are checked at once.
//
// Each band is one deflate block. A band that is not the last ends with an
// empty stored block, as a sync flush does, so the bands' outputs can be
// concatenated into one stream (see deflateBands).

const maxMatch = 258 // deflate's longest copy

// Deflate's length codes 257..285: the base length and extra bits of each.
var (
	lengthBase  = [29]uint16{3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258}
	lengthExtra = [29]uint8{0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0}
	lengthCode  [maxMatch + 1]uint8 // length -> index into the tables above
)

func init() {
	for c := range lengthBase {
		hi := maxMatch
		if c+1 < len(lengthBase) {
			hi = int(lengthBase[c+1]) - 1
		}
		for l := int(lengthBase[c]); l <= hi; l++ {
			lengthCode[l] = uint8(c)
		}
	}
	lengthCode[maxMatch] = 28 // 258 has its own code, not 227+31
}

// zeroRun is a run of zero bytes in a band's data.
type zeroRun struct{ start, n int }

// findZeroRuns lists the zero runs that contain an 8-byte word of zeros
// at an offset that is a multiple of 8: every run of 15 or more, and some
// of 8 to 14. Looking at aligned words only is what keeps the scan of
// non-zero data at one load and compare per 8 bytes.
func findZeroRuns(data []byte, runs []zeroRun) []zeroRun {
	prevEnd := 0
	for i := 0; i+8 <= len(data); {
		if binary.LittleEndian.Uint64(data[i:]) != 0 {
			i += 8
			continue
		}
		s := i
		for s > prevEnd && data[s-1] == 0 {
			s--
		}
		e := i + 8
		for e+8 <= len(data) && binary.LittleEndian.Uint64(data[e:]) == 0 {
			e += 8
		}
		for e < len(data) && data[e] == 0 {
			e++
		}
		runs = append(runs, zeroRun{s, e - s})
		prevEnd = e
		i = (e + 7) &^ 7
	}
	return runs
}

// copies splits the run-1 zeros after a run's first (literal) zero into
// distance-1 copies of 3..maxMatch bytes, calling f with each length, and
// returns how many zeros are left over for literals (0, 1 or 2).
func copies(run int, f func(n int)) int {
	rest := run - 1
	for rest >= 3 {
		n := min(rest, maxMatch)
		if r := rest - n; r > 0 && r < 3 {
			n = rest - 3 // leave a tail long enough to copy
		}
		f(n)
		rest -= n
	}
	return rest
}

// bitWriter appends deflate's LSB-first bit stream to buf.
type bitWriter struct {
	buf   []byte
	acc   uint64
	nbits uint
}

func (w *bitWriter) write(code uint32, n uint) {
	w.acc |= uint64(code) << w.nbits
	w.nbits += n
	if w.nbits >= 32 {
		w.buf = binary.LittleEndian.AppendUint32(w.buf, uint32(w.acc))
		w.acc >>= 32
		w.nbits -= 32
	}
}

// literals writes p's bytes as literals, two per check of the
// accumulator: two codes of at most 15 bits fit beside 31 pending bits.
func (w *bitWriter) literals(p []byte, h *huffman) {
	codes, lens := h.codes[:256], h.lens[:256]
	acc, nbits, buf := w.acc, w.nbits, w.buf
	for len(p) >= 2 {
		b0, b1 := p[0], p[1]
		acc |= uint64(codes[b0]) << nbits
		nbits += uint(lens[b0])
		acc |= uint64(codes[b1]) << nbits
		nbits += uint(lens[b1])
		if nbits >= 32 {
			buf = binary.LittleEndian.AppendUint32(buf, uint32(acc))
			acc >>= 32
			nbits -= 32
		}
		p = p[2:]
	}
	w.acc, w.nbits, w.buf = acc, nbits, buf
	for _, b := range p {
		w.write(codes[b], uint(lens[b]))
	}
}

// align pads to a byte boundary and flushes.
func (w *bitWriter) align() {
	for w.nbits > 0 {
		w.buf = append(w.buf, byte(w.acc))
		w.acc >>= 8
		w.nbits = max(w.nbits, 8) - 8
	}
	w.acc = 0
}

// huffman is a canonical code: lengths, and codes already bit-reversed
// for deflate's LSB-first packing.
type huffman struct {
	lens  []uint8
	codes []uint32
}

// newHuffman builds a code of at most maxBits for the given frequencies.
// Symbols with zero frequency get no code; at least two symbols always
// get one, since a one-symbol code is not complete.
func newHuffman(freq []uint32, maxBits int) huffman {
	type node struct {
		freq uint64
		sym  int // leaf symbol, or -1
		l, r int
	}
	var nodes []node
	var live []int
	for s, f := range freq {
		if f > 0 {
			nodes = append(nodes, node{freq: uint64(f), sym: s})
			live = append(live, len(nodes)-1)
		}
	}
	for s := 0; len(live) < 2; s++ { // pad with unused symbols
		if freq[s] == 0 {
			nodes = append(nodes, node{freq: 1, sym: s})
			live = append(live, len(nodes)-1)
		}
	}
	// Huffman's algorithm on a sorted list (n is at most 286).
	slices.SortFunc(live, func(a, b int) int { return int(nodes[a].freq) - int(nodes[b].freq) })
	for len(live) > 1 {
		a, b := live[0], live[1]
		nodes = append(nodes, node{freq: nodes[a].freq + nodes[b].freq, sym: -1, l: a, r: b})
		n := len(nodes) - 1
		live = live[2:]
		i, _ := slices.BinarySearchFunc(live, nodes[n].freq, func(x int, f uint64) int {
			if nodes[x].freq <= f {
				return -1
			}
			return 1
		})
		live = slices.Insert(live, i, n)
	}
	lens := make([]uint8, len(freq))
	var depthCount [64]int
	var walk func(n, d int)
	walk = func(n, d int) {
		if nodes[n].sym >= 0 {
			lens[nodes[n].sym] = uint8(max(d, 1))
			depthCount[max(d, 1)]++
			return
		}
		walk(nodes[n].l, d+1)
		walk(nodes[n].r, d+1)
	}
	walk(live[0], 0)
	limitLengths(lens, depthCount[:], maxBits)
	return canonical(lens)
}

// limitLengths shortens codes longer than maxBits, keeping the code
// complete: the adjustment of the JPEG standard (Annex K.2), then the
// symbols re-assigned to lengths in their old order.
func limitLengths(lens []uint8, count []int, maxBits int) {
	longest := 0
	for d, c := range count {
		if c > 0 {
			longest = d
		}
	}
	if longest <= maxBits {
		return
	}
	for i := longest; i > maxBits; i-- {
		for count[i] > 0 {
			j := i - 2
			for count[j] == 0 {
				j--
			}
			count[i] -= 2
			count[i-1]++
			count[j+1] += 2
			count[j]--
		}
	}
	// Longest codes go to the least frequent symbols: keep the old order.
	syms := make([]int, 0, len(lens))
	for s, l := range lens {
		if l > 0 {
			syms = append(syms, s)
		}
	}
	slices.SortStableFunc(syms, func(a, b int) int { return int(lens[a]) - int(lens[b]) })
	k := 0
	for d := 1; d <= maxBits; d++ {
		for range count[d] {
			lens[syms[k]] = uint8(d)
			k++
		}
	}
}

// canonical assigns deflate's canonical codes to lengths.
func canonical(lens []uint8) huffman {
	var count [16]uint32
	for _, l := range lens {
		count[l]++
	}
	count[0] = 0
	var next [16]uint32
	code := uint32(0)
	for l := 1; l < 16; l++ {
		code = (code + count[l-1]) << 1
		next[l] = code
	}
	codes := make([]uint32, len(lens))
	for s, l := range lens {
		if l > 0 {
			codes[s] = bits.Reverse32(next[l]) >> (32 - uint(l))
			next[l]++
		}
	}
	return huffman{lens: lens, codes: codes}
}

// codeLengthOrder is the order in which the code-length code's lengths
// are sent.
var codeLengthOrder = [19]int{16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15}

// writeDynamicHeader sends a dynamic block's header: the literal/length
// code, and a distance code of one 1-bit code for distance 1 (deflate
// allows that one incomplete code).
func writeDynamicHeader(w *bitWriter, last bool, lit huffman) {
	nlit := 286
	for nlit > 257 && lit.lens[nlit-1] == 0 {
		nlit--
	}
	ndist := 1
	all := append(slices.Clone(lit.lens[:nlit]), 1) // then the distance code
	// Run-length code the lengths: 16 repeats the previous 3-6 times, 17
	// and 18 are 3-10 and 11-138 zeros.
	type clsym struct{ sym, extra, nextra uint8 }
	var syms []clsym
	for i := 0; i < len(all); {
		l := all[i]
		j := i + 1
		for j < len(all) && all[j] == l {
			j++
		}
		run := j - i
		for run > 0 {
			switch {
			case l == 0 && run >= 11:
				n := min(run, 138)
				syms = append(syms, clsym{18, uint8(n - 11), 7})
				run -= n
			case l == 0 && run >= 3:
				n := min(run, 10)
				syms = append(syms, clsym{17, uint8(n - 3), 3})
				run -= n
			case l != 0 && run >= 4:
				syms = append(syms, clsym{l, 0, 0})
				run--
				for run >= 3 {
					n := min(run, 6)
					syms = append(syms, clsym{16, uint8(n - 3), 2})
					run -= n
				}
			default:
				syms = append(syms, clsym{l, 0, 0})
				run--
			}
		}
		i = j
	}
	freq := make([]uint32, 19)
	for _, s := range syms {
		freq[s.sym]++
	}
	cl := newHuffman(freq, 7)
	ncl := 19
	for ncl > 4 && cl.lens[codeLengthOrder[ncl-1]] == 0 {
		ncl--
	}
	final := uint32(0)
	if last {
		final = 1
	}
	w.write(final|2<<1, 3) // BFINAL, BTYPE=10 (dynamic)
	w.write(uint32(nlit-257), 5)
	w.write(uint32(ndist-1), 5)
	w.write(uint32(ncl-4), 4)
	for _, s := range codeLengthOrder[:ncl] {
		w.write(uint32(cl.lens[s]), 3)
	}
	for _, s := range syms {
		w.write(cl.codes[s.sym], uint(cl.lens[s.sym]))
		if s.nextra > 0 {
			w.write(uint32(s.extra), uint(s.nextra))
		}
	}
}

// deflateFast appends data to out as one deflate block (the stream's last
// when last; otherwise followed by an empty stored block) and returns out
// with data's Adler-32. runs is scratch space, returned for reuse.
func deflateFast(out, data []byte, last bool, runs []zeroRun) ([]byte, uint32, []zeroRun) {
	runs = findZeroRuns(data, runs[:0])
	var litFreq [286]uint32
	litFreq[256] = 1 // end of block
	countCopy := func(n int) { litFreq[257+int(lengthCode[n])]++ }
	i := 0
	for _, r := range runs {
		for _, b := range data[i:r.start] {
			litFreq[b]++
		}
		litFreq[0] += uint32(1 + copies(r.n, countCopy))
		i = r.start + r.n
	}
	for _, b := range data[i:] {
		litFreq[b]++
	}
	lit := newHuffman(litFreq[:], 15)
	w := bitWriter{buf: out}
	writeDynamicHeader(&w, last, lit)
	zero := func() { w.write(lit.codes[0], uint(lit.lens[0])) }
	writeCopy := func(n int) {
		c := lengthCode[n]
		w.write(lit.codes[257+int(c)], uint(lit.lens[257+int(c)]))
		if e := lengthExtra[c]; e > 0 {
			w.write(uint32(n-int(lengthBase[c])), uint(e))
		}
		w.write(0, 1) // distance code 0 (distance 1), one bit
	}
	a := adler{s1: 1}
	i = 0
	for _, r := range runs {
		seg := data[i:r.start]
		w.literals(seg, &lit)
		a.update(seg)
		a.zeros(r.n)
		zero()
		for range copies(r.n, writeCopy) {
			zero()
		}
		i = r.start + r.n
	}
	w.literals(data[i:], &lit)
	a.update(data[i:])
	w.write(lit.codes[256], uint(lit.lens[256]))
	if !last {
		w.write(0, 3) // empty stored block: BFINAL 0, BTYPE 00
		w.align()
		w.buf = append(w.buf, 0, 0, 0xFF, 0xFF)
	} else {
		w.align()
	}
	return w.buf, a.s2<<16 | a.s1, runs
}

// adler is a running Adler-32 that takes zero runs in O(1): a zero adds
// nothing to s1 and s1 to s2.
type adler struct{ s1, s2 uint32 }

const adlerBase = 65521

func (a *adler) update(p []byte) {
	s1, s2 := a.s1, a.s2
	for len(p) > 0 {
		// At most 5552 bytes before s2 can overflow 32 bits.
		q := p[:min(len(p), 5552)]
		p = p[len(q):]
		for len(q) >= 4 {
			s1 += uint32(q[0])
			s2 += s1
			s1 += uint32(q[1])
			s2 += s1
			s1 += uint32(q[2])
			s2 += s1
			s1 += uint32(q[3])
			s2 += s1
			q = q[4:]
		}
		for _, b := range q {
			s1 += uint32(b)
			s2 += s1
		}
		s1 %= adlerBase
		s2 %= adlerBase
	}
	a.s1, a.s2 = s1, s2
}

func (a *adler) zeros(n int) {
	a.s2 = uint32((uint64(a.s2) + uint64(a.s1)*uint64(n)) % adlerBase)
}
