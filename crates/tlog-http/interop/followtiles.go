// Command followtiles follows a domicile log served as C2SP tlog-tiles with the Go checksum
// database's own tile client, golang.org/x/mod/sumdb/tlog (whose tiles are tlog-tiles with the
// height, 8, in the path), and golang.org/x/mod/sumdb/note. It shares no code with domicile.
//
//	followtiles -url http://127.0.0.1:7381 -vkey log.vkey
//
// It opens the checkpoint under the key, reads every leaf hash through tlog.TileHashReader
// (which authenticates each tile it reads against the checkpoint's root, level by level),
// recomputes the tree hash from the tiles, and checks that every entry of every entry bundle
// hashes to its leaf. Prints "OK <size> <base64 root>".
package main

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

func fail(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "followtiles: "+format+"\n", args...)
	os.Exit(1)
}

var prefix string

func get(path string) []byte {
	resp, err := http.Get(prefix + "/" + path)
	if err != nil {
		fail("%s: %v", path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		fail("%s: %v", path, err)
	}
	if resp.StatusCode != 200 {
		fail("%s: status %d", path, resp.StatusCode)
	}
	return body
}

// tlogTilesPath turns x/mod's "tile/8/L/N[.p/W]" (and "tile/8/data/N") into tlog-tiles paths.
func tlogTilesPath(t tlog.Tile) string {
	p := strings.TrimPrefix(t.Path(), "tile/8/")
	p = strings.Replace(p, "data/", "entries/", 1)
	return "tile/" + p
}

type reader struct{}

func (reader) Height() int { return 8 }

func (reader) ReadTiles(tiles []tlog.Tile) ([][]byte, error) {
	out := make([][]byte, len(tiles))
	for i, t := range tiles {
		out[i] = get(tlogTilesPath(t))
	}
	return out, nil
}

func (reader) SaveTiles([]tlog.Tile, [][]byte) {}

func main() {
	url := flag.String("url", "", "the log's URL prefix")
	vkeyFile := flag.String("vkey", "", "the log's verifier key file")
	flag.Parse()
	prefix = strings.TrimRight(*url, "/")
	vkey, err := os.ReadFile(*vkeyFile)
	if err != nil {
		fail("%v", err)
	}
	verifier, err := note.NewVerifier(strings.TrimSpace(string(vkey)))
	if err != nil {
		fail("verifier key: %v", err)
	}
	n, err := note.Open(get("checkpoint"), note.VerifierList(verifier))
	if err != nil {
		fail("checkpoint: %v", err)
	}
	lines := strings.Split(n.Text, "\n")
	if len(lines) < 4 || lines[0] != verifier.Name() {
		fail("checkpoint: unexpected body %q", n.Text)
	}
	size, err := strconv.ParseInt(lines[1], 10, 64)
	if err != nil {
		fail("checkpoint size: %v", err)
	}
	rootBytes, err := base64.StdEncoding.DecodeString(lines[2])
	if err != nil || len(rootBytes) != tlog.HashSize {
		fail("checkpoint root: %q", lines[2])
	}
	var root tlog.Hash
	copy(root[:], rootBytes)

	hr := tlog.TileHashReader(tlog.Tree{N: size, Hash: root}, reader{})
	th, err := tlog.TreeHash(size, hr)
	if err != nil {
		fail("tree hash from tiles: %v", err)
	}
	if th != root {
		fail("the tiles give root %v, the checkpoint signs %v", th, root)
	}
	indexes := make([]int64, size)
	for i := range indexes {
		indexes[i] = tlog.StoredHashIndex(0, int64(i))
	}
	leaves, err := hr.ReadHashes(indexes)
	if err != nil {
		fail("leaf hashes from tiles: %v", err)
	}
	for start := int64(0); start < size; start += 256 {
		w := size - start
		if w > 256 {
			w = 256
		}
		t := tlog.Tile{H: 8, L: -1, N: start / 256, W: int(w)}
		r := bytes.NewReader(get(tlogTilesPath(t)))
		for i := int64(0); i < w; i++ {
			var l uint16
			if err := binary.Read(r, binary.BigEndian, &l); err != nil {
				fail("bundle %d: entry %d: %v", t.N, start+i, err)
			}
			entry := make([]byte, l)
			if _, err := io.ReadFull(r, entry); err != nil {
				fail("bundle %d: entry %d: %v", t.N, start+i, err)
			}
			if tlog.RecordHash(entry) != leaves[start+i] {
				fail("entry %d does not hash to its leaf", start+i)
			}
		}
		if r.Len() != 0 {
			fail("bundle %d: %d trailing bytes", t.N, r.Len())
		}
	}
	fmt.Printf("OK %d %s\n", size, lines[2])
}
