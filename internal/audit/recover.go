package audit

import (
	"bytes"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"time"
)

// Crash recovery. The file is written first and synchronously; the table
// gets events later, from memory. A process killed with events in memory
// loses them for the table only. A clean close leaves cleanMarker in the
// spool directory, and a start that finds none re-sends the file's last
// events to the table through the spool: those the table already has are
// merged away by event id (ReplacingMergeTree; readers use FINAL; from
// 22.2 the batch's token also stops a repeat).
const cleanMarker = "clean-shutdown"

// recoveryWindow is how far before the file's last event a start after a
// crash looks: events in memory at a crash are at most a few flush
// intervals old (a batch is sealed after FlushInterval, and while
// ClickHouse fails every sealed batch goes to the spool).
const recoveryWindow = time.Minute

// recoveryTail bounds how much of the end of the file is read.
const recoveryTail = 16 << 20

// uncleanStart reports whether the last process using dir did not close
// cleanly, and removes the marker so that this one's crash is seen too.
func uncleanStart(dir string) bool {
	err := os.Remove(filepath.Join(dir, cleanMarker))
	return os.IsNotExist(err)
}

// markClean records a clean close in dir.
func markClean(dir string) error {
	return writeFileSync(dir, cleanMarker, nil)
}

// recoverFrom puts the events of the file at path from its last
// recoveryWindow in the spool, for the table; it returns how many.
func (t *tableSink) recoverFrom(path string) (int, error) {
	events, err := lastEvents(path, recoveryWindow)
	if err != nil || len(events) == 0 {
		return 0, err
	}
	b := &batch{stamp: t.spool.stamp(), id: NewEventID(), events: events}
	if err := t.spool.put(b); err != nil {
		return 0, err
	}
	return len(events), nil
}

// lastEvents returns the file's events from within window of its last
// one, read from its last recoveryTail bytes.
func lastEvents(path string, window time.Duration) ([]Record, error) {
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	start := max(fi.Size()-recoveryTail, 0)
	data, err := io.ReadAll(io.NewSectionReader(f, start, fi.Size()-start))
	if err != nil {
		return nil, err
	}
	if start > 0 { // the first line may be cut
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			data = data[i+1:]
		}
	}
	type stamped struct {
		event Record
		at    time.Time
	}
	var events []stamped
	var last time.Time
	for _, line := range bytes.SplitAfter(data, []byte("\n")) {
		var r Record
		if len(bytes.TrimSpace(line)) == 0 || json.Unmarshal(line, &r) != nil || !validUUID(r.EventID) {
			continue // a line cut by the crash, or not an event
		}
		at := r.Time()
		events = append(events, stamped{r, at})
		if at.After(last) {
			last = at
		}
	}
	var out []Record
	for _, e := range events {
		if !e.at.Before(last.Add(-window)) {
			out = append(out, e.event)
		}
	}
	return out, nil
}
