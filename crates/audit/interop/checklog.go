// Command checklog checks a domicile audit log directory, and proofs taken from it, with the Go
// implementations of the same specs: golang.org/x/mod/sumdb/note for the signed checkpoints and
// golang.org/x/mod/sumdb/tlog (an RFC 6962 tree) for the tree, inclusion and consistency proofs.
// It shares no code with domicile.
//
//	checklog -log DIR -vkey log.vkey [-proof FILE.tlog-proof]... [-consistency FILE]...
//
// A consistency file holds four lines "size1 size2", base64 root1, base64 root2, then one base64
// proof hash per line.
package main

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

type list []string

func (l *list) String() string     { return strings.Join(*l, ",") }
func (l *list) Set(v string) error { *l = append(*l, v); return nil }

func fail(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "checklog: "+format+"\n", args...)
	os.Exit(1)
}

// frames splits a file of u32 length ‖ 8-byte check ‖ payload frames (the checks are
// domicile's torn-write detection; the signatures and the tree are what is checked here).
func frames(b []byte) [][]byte {
	var out [][]byte
	for len(b) > 0 {
		if len(b) < 12 {
			fail("a frame is cut short")
		}
		n := int(binary.BigEndian.Uint32(b))
		if len(b) < 12+n {
			fail("a frame is cut short")
		}
		out = append(out, b[12:12+n])
		b = b[12+n:]
	}
	return out
}

type checkpoint struct {
	origin string
	size   int64
	root   tlog.Hash
}

func parseCheckpoint(text string) checkpoint {
	lines := strings.SplitN(text, "\n", 4)
	if len(lines) < 4 {
		fail("checkpoint body %q is too short", text)
	}
	size, err := strconv.ParseInt(lines[1], 10, 64)
	if err != nil {
		fail("checkpoint size %q: %v", lines[1], err)
	}
	root, err := base64.StdEncoding.DecodeString(lines[2])
	if err != nil || len(root) != 32 {
		fail("checkpoint root %q is not 32 bytes of base64", lines[2])
	}
	var h tlog.Hash
	copy(h[:], root)
	return checkpoint{lines[0], size, h}
}

func main() {
	dir := flag.String("log", "", "log directory")
	vkeyFile := flag.String("vkey", "", "log verifier key file")
	var proofs, consistencies list
	flag.Var(&proofs, "proof", "a tlog-proof file (repeatable)")
	flag.Var(&consistencies, "consistency", "a consistency proof file (repeatable)")
	flag.Parse()

	vkeyText, err := os.ReadFile(*vkeyFile)
	if err != nil {
		fail("%v", err)
	}
	verifier, err := note.NewVerifier(strings.TrimSpace(string(vkeyText)))
	if err != nil {
		fail("verifier key: %v", err)
	}
	verifiers := note.VerifierList(verifier)

	// Every stored checkpoint must open under the key.
	raw, err := os.ReadFile(filepath.Join(*dir, "checkpoints.notes"))
	if err != nil {
		fail("%v", err)
	}
	var cps []checkpoint
	for i, msg := range frames(raw) {
		n, err := note.Open(msg, verifiers)
		if err != nil {
			fail("checkpoint %d: %v", i, err)
		}
		cps = append(cps, parseCheckpoint(n.Text))
	}

	// The tree, from the entries, with tlog's own stored-hash layout.
	var stored []tlog.Hash
	reader := tlog.HashReaderFunc(func(idx []int64) ([]tlog.Hash, error) {
		out := make([]tlog.Hash, len(idx))
		for i, x := range idx {
			out[i] = stored[x]
		}
		return out, nil
	})
	segs, _ := filepath.Glob(filepath.Join(*dir, "segments", "*.seg"))
	sort.Strings(segs)
	var count int64
	for _, s := range segs {
		b, err := os.ReadFile(s)
		if err != nil {
			fail("%v", err)
		}
		if len(b) < 16 || !bytes.Equal(b[:8], []byte("DMCAUDS1")) {
			fail("%s: not a segment", s)
		}
		for _, entry := range frames(b[16:]) {
			hs, err := tlog.StoredHashes(count, entry, reader)
			if err != nil {
				fail("%v", err)
			}
			stored = append(stored, hs...)
			count++
		}
	}
	for i, cp := range cps {
		if cp.size > count {
			fail("checkpoint %d signs %d entries, the log holds %d", i, cp.size, count)
		}
		th, err := tlog.TreeHash(cp.size, reader)
		if err != nil || th != cp.root {
			fail("checkpoint %d: tlog computes root %v, the checkpoint signs %v", i, th, cp.root)
		}
		if i > 0 {
			p, err := tlog.ProveTree(cp.size, cps[i-1].size, reader)
			if err == nil {
				err = tlog.CheckTree(p, cp.size, cp.root, cps[i-1].size, cps[i-1].root)
			}
			if err != nil {
				fail("checkpoints %d and %d: %v", i-1, i, err)
			}
		}
	}
	fmt.Printf("note+tlog: %d entries, %d checkpoints open under %s and match the entries\n",
		count, len(cps), verifier.Name())

	// Inclusion proofs made by domicile, checked by tlog.
	for _, f := range proofs {
		b, err := os.ReadFile(f)
		if err != nil {
			fail("%v", err)
		}
		head, rest, ok := strings.Cut(string(b), "\n\n")
		if !ok {
			fail("%s: no checkpoint", f)
		}
		n, err := note.Open([]byte(rest), verifiers)
		if err != nil {
			fail("%s: %v", f, err)
		}
		cp := parseCheckpoint(n.Text)
		lines := strings.Split(head, "\n")
		if lines[0] != "c2sp.org/tlog-proof@v1" || !strings.HasPrefix(lines[1], "extra ") ||
			!strings.HasPrefix(lines[2], "index ") {
			fail("%s: not a tlog-proof", f)
		}
		entry, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(lines[1], "extra "))
		if err != nil {
			fail("%s: extra: %v", f, err)
		}
		index, err := strconv.ParseInt(strings.TrimPrefix(lines[2], "index "), 10, 64)
		if err != nil {
			fail("%s: index: %v", f, err)
		}
		var p tlog.RecordProof
		for _, l := range lines[3:] {
			h, err := tlog.ParseHash(l)
			if err != nil {
				fail("%s: %v", f, err)
			}
			p = append(p, h)
		}
		if err := tlog.CheckRecord(p, cp.size, cp.root, index, tlog.RecordHash(entry)); err != nil {
			fail("%s: %v", f, err)
		}
		fmt.Printf("tlog: %s proves entry %d in the tree of %d\n", filepath.Base(f), index, cp.size)
	}

	// Consistency proofs made by domicile, checked by tlog.
	for _, f := range consistencies {
		file, err := os.Open(f)
		if err != nil {
			fail("%v", err)
		}
		sc := bufio.NewScanner(file)
		var lines []string
		for sc.Scan() {
			lines = append(lines, sc.Text())
		}
		file.Close()
		var size1, size2 int64
		if _, err := fmt.Sscanf(lines[0], "%d %d", &size1, &size2); err != nil {
			fail("%s: sizes: %v", f, err)
		}
		var hashes []tlog.Hash
		for _, l := range lines[1:] {
			h, err := tlog.ParseHash(l)
			if err != nil {
				fail("%s: %v", f, err)
			}
			hashes = append(hashes, h)
		}
		if err := tlog.CheckTree(tlog.TreeProof(hashes[2:]), size2, hashes[1], size1, hashes[0]); err != nil {
			fail("%s: %v", f, err)
		}
		fmt.Printf("tlog: %s proves size %d consistent with %d\n", filepath.Base(f), size1, size2)
	}
}
