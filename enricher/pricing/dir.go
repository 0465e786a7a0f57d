package pricing

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"github.com/tokenmeter/tokenmeter/schemas/pricefile"
)

// Dir is the content of a pricing directory as read at one moment: the name and bytes of
// every *.yaml file in it. Reading first and parsing from the bytes read means that a file
// changing while it is loaded cannot mix two versions into one catalogue, and that Sum says
// exactly which content a catalogue was built from.
type Dir struct {
	names []string
	data  [][]byte
	sum   string
}

// ReadDir reads every *.yaml file of dir (not its subdirectories).
func ReadDir(dir string) (Dir, error) {
	d, err := readFS(os.DirFS(dir))
	if err != nil {
		return Dir{}, fmt.Errorf("read pricing directory %s: %w", dir, err)
	}
	return d, nil
}

// maxFileSize bounds one pricing file: the largest shipped file is a few KiB, and a
// LiteLLM import of every model stays under 1 MiB.
const maxFileSize = 8 << 20

func readFS(fsys fs.FS) (Dir, error) {
	names, err := fs.Glob(fsys, "*.yaml")
	if err != nil {
		return Dir{}, err
	}
	if len(names) == 0 {
		return Dir{}, errors.New("no *.yaml pricing files")
	}
	d := Dir{names: names}
	h := sha256.New()
	var errs []error
	for _, name := range names {
		data, err := fs.ReadFile(fsys, name)
		if err == nil && len(data) > maxFileSize {
			err = fmt.Errorf("%s: %d bytes, more than the %d a pricing file may have", name, len(data), maxFileSize)
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		d.data = append(d.data, data)
		for _, b := range [][]byte{[]byte(name), data} {
			h.Write(binary.AppendUvarint(nil, uint64(len(b))))
			h.Write(b)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return Dir{}, err
	}
	d.sum = hex.EncodeToString(h.Sum(nil))
	return d, nil
}

// Sum is a hash of the file names and bytes: it changes when any file is added, removed,
// renamed or edited, comments included.
func (d Dir) Sum() string { return d.sum }

// OverridesSuffix ends the name of an organisation overrides file (pricefile.Overrides) in a
// pricing directory; every other *.yaml file is a provider's pricing file.
const OverridesSuffix = ".overrides.yaml"

// Catalog parses the files and builds a catalogue from them, reporting every problem of
// every file.
func (d Dir) Catalog() (*Catalog, error) {
	files, overrides, err := d.parse()
	if err != nil {
		return nil, err
	}
	return Build(files, overrides)
}

// Files parses the directory's files and returns its provider pricing files, for tools that
// show or check the rows themselves; it reports every problem of every file, overrides
// files included.
func (d Dir) Files() ([]pricefile.File, error) {
	files, _, err := d.parse()
	return files, err
}

func (d Dir) parse() ([]pricefile.File, []pricefile.Overrides, error) {
	var files []pricefile.File
	var overrides []pricefile.Overrides
	var errs []error
	for i, name := range d.names {
		if strings.HasSuffix(name, OverridesSuffix) {
			o, err := pricefile.ParseOverrides(name, d.data[i])
			if err != nil {
				errs = append(errs, err)
				continue
			}
			overrides = append(overrides, o)
			continue
		}
		f, err := pricefile.Parse(name, d.data[i])
		if err != nil {
			errs = append(errs, err)
			continue
		}
		files = append(files, f)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, nil, err
	}
	return files, overrides, nil
}
