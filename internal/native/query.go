package native

import (
	"fmt"
	"strconv"
	"time"

	"github.com/ClickHouse/ch-go/proto"
)

// Protocol revisions (ClickHouse's src/Core/ProtocolDefines.h) that ch-go
// does not name.
const (
	revClientInfo      = 54032 // the Query packet carries the client info
	revTotalRows       = 51554 // Progress has total_rows
	minClientRevision  = revClientInfo
	interfaceTCP       = 1
	queryKindNone      = 0
	queryKindInitial   = 1
	maxQueryIDBytes    = 1 << 10
	maxQueryBytes      = 64 << 20
	maxSettingBytes    = 1 << 20
	maxClientText      = 1 << 10
	maxSettings        = 1 << 12
	maxTraceStateBytes = 1 << 12
)

// clientInfo is what clickgate keeps of a Query packet's client info:
// what names the client program. Who the person is, and the kind of
// query, are clickgate's to set.
type clientInfo struct {
	osUser, hostname, name string
	major, minor, revision uint64
	patch                  uint64
	trace                  []byte // OpenTelemetry: trace id, span id, state, flags; nil: none
	// kind and quotaKey are as read; clickgate sends an initial query
	// and the person's quota key.
	kind     byte
	quotaKey string
}

// query is a client's Query packet.
type query struct {
	id          string
	info        clientInfo
	settings    []setting
	secret      string
	stage       uint64
	compression bool
	body        string
	params      []setting
}

// readQuery decodes a Query packet (after its code) at revision rev.
func readQuery(s source, rev int) (*query, error) {
	q := &query{}
	var err error
	if q.id, err = readString(s, maxQueryIDBytes, "the query id"); err != nil {
		return nil, err
	}
	if rev >= revClientInfo {
		if err := readClientInfo(s, rev, &q.info); err != nil {
			return nil, err
		}
	}
	if proto.FeatureSettingsSerializedAsStrings.In(rev) {
		if q.settings, err = readStringSettings(s); err != nil {
			return nil, err
		}
	} else if q.settings, err = readLegacySettings(s); err != nil {
		return nil, err
	}
	if proto.FeatureInterServerSecret.In(rev) {
		if q.secret, err = readString(s, maxClientText, "the inter-server secret"); err != nil {
			return nil, err
		}
	}
	if q.stage, err = readUVarInt(s); err != nil {
		return nil, err
	}
	c, err := readUVarInt(s)
	if err != nil {
		return nil, err
	}
	if c > 1 {
		return nil, protocolError("the Query packet's compression flag is %d", c)
	}
	q.compression = c == 1
	if q.body, err = readString(s, maxQueryBytes, "the query"); err != nil {
		return nil, err
	}
	if proto.FeatureParameters.In(rev) {
		if q.params, err = readStringSettings(s); err != nil {
			return nil, err
		}
	}
	return q, nil
}

func readClientInfo(s source, rev int, ci *clientInfo) error {
	kind, err := s.ReadByte()
	if err != nil {
		return err
	}
	ci.kind = kind
	if kind == queryKindNone {
		return nil
	}
	if kind > 2 {
		return protocolError("query kind %d is unknown", kind)
	}
	for range 3 { // initial user, query id, address: clickgate sets them
		if _, err := readString(s, maxClientText, "the client info"); err != nil {
			return err
		}
	}
	if proto.FeatureQueryStartTime.In(rev) {
		if err := s.skip(8); err != nil {
			return err
		}
	}
	iface, err := s.ReadByte()
	if err != nil {
		return err
	}
	if iface != interfaceTCP {
		return protocolError("the client info names interface %d; a native client's is TCP (1)", iface)
	}
	for _, f := range []*string{&ci.osUser, &ci.hostname, &ci.name} {
		if *f, err = readString(s, maxClientText, "the client info"); err != nil {
			return err
		}
	}
	for _, f := range []*uint64{&ci.major, &ci.minor, &ci.revision} {
		if *f, err = readUVarInt(s); err != nil {
			return err
		}
	}
	if proto.FeatureQuotaKeyInClientInfo.In(rev) {
		if ci.quotaKey, err = readString(s, maxClientText, "the quota key"); err != nil {
			return err
		}
	}
	if proto.FeatureDistributedDepth.In(rev) {
		if _, err := readUVarInt(s); err != nil {
			return err
		}
	}
	if proto.FeatureVersionPatch.In(rev) {
		if ci.patch, err = readUVarInt(s); err != nil {
			return err
		}
	}
	if proto.FeatureOpenTelemetry.In(rev) {
		has, err := s.ReadByte()
		if err != nil {
			return err
		}
		if has > 1 {
			return protocolError("the trace flag is %d", has)
		}
		if has == 1 {
			t := make([]byte, 24)
			if err := s.full(t); err != nil {
				return err
			}
			state, err := readBytes(s, maxTraceStateBytes, "the trace state")
			if err != nil {
				return err
			}
			flags, err := s.ReadByte()
			if err != nil {
				return err
			}
			t = appendString(t, string(state))
			ci.trace = append(t, flags)
		}
	}
	if proto.FeatureParallelReplicas.In(rev) {
		for range 3 { // parallel replicas: a client's are none
			if _, err := readUVarInt(s); err != nil {
				return err
			}
		}
	}
	return nil
}

func readStringSettings(s source) ([]setting, error) {
	var out []setting
	for {
		name, err := readString(s, maxClientText, "a setting's name")
		if err != nil || name == "" {
			return out, err
		}
		if len(out) >= maxSettings {
			return nil, protocolError("more than %d settings", maxSettings)
		}
		flags, err := readUVarInt(s)
		if err != nil {
			return nil, err
		}
		value, err := readString(s, maxSettingBytes, "a setting's value")
		if err != nil {
			return nil, err
		}
		out = append(out, setting{name: name, value: value, flags: flags})
	}
}

// readLegacySettings reads binary settings (before revision 54429).
func readLegacySettings(s source) ([]setting, error) {
	var out []setting
	for {
		name, err := readString(s, maxClientText, "a setting's name")
		if err != nil || name == "" {
			return out, err
		}
		if len(out) >= maxSettings {
			return nil, protocolError("more than %d settings", maxSettings)
		}
		kind, ok := legacySettings[name]
		if !ok {
			// Its value's length is unknown: the packet cannot be read on.
			return nil, &refusal{code: codeUnknownSetting, name: "UNKNOWN_SETTING", fatal: true,
				msg: fmt.Sprintf("clickgate: the setting %q is unknown to clickgate for this ClickHouse version, whose protocol sends settings in binary by type; leave it out or use SET in the query", clip(name))}
		}
		var value string
		switch kind {
		case kindVarUInt:
			v, err := readUVarInt(s)
			if err != nil {
				return nil, err
			}
			value = strconv.FormatUint(v, 10)
		case kindVarInt:
			v, err := readUVarInt(s)
			if err != nil {
				return nil, err
			}
			value = strconv.FormatInt(int64(v>>1)^-int64(v&1), 10)
		default:
			if value, err = readString(s, maxSettingBytes, "a setting's value"); err != nil {
				return nil, err
			}
		}
		out = append(out, setting{name: name, value: value})
	}
}

// upstreamQuery is the Query packet clickgate sends.
type upstreamQuery struct {
	// compression is the query's: the server's blocks come compressed,
	// and the client's are sent compressed.
	compression bool
	id          string
	info        clientInfo
	quotaKey    string
	client      []setting // the client's settings that pass
	fixed       []setting // clickgate's: clickhouse.settings, then the mode's
	stage       uint64
	body        string
	params      []setting
}

// important is the strings format's flag for a setting the server must
// know (an unknown one is an error, not ignored).
const important = 0x01

// encode appends the packet at revision rev.
func (u *upstreamQuery) encode(b []byte, rev int) ([]byte, error) {
	b = appendUVarInt(b, uint64(proto.ClientCodeQuery))
	b = appendString(b, u.id)
	if rev >= revClientInfo {
		b = u.encodeInfo(b, rev)
	}
	var err error
	if proto.FeatureSettingsSerializedAsStrings.In(rev) {
		for _, s := range u.client {
			b = appendString(b, s.name)
			b = appendUVarInt(b, s.flags&0x07)
			b = appendString(b, s.value)
		}
		for _, s := range u.fixed {
			b = appendString(b, s.name)
			b = appendUVarInt(b, important)
			b = appendString(b, s.value)
		}
	} else if b, err = u.encodeLegacy(b); err != nil {
		return nil, err
	}
	b = appendString(b, "") // end of settings
	if proto.FeatureInterServerSecret.In(rev) {
		b = appendString(b, "")
	}
	b = appendUVarInt(b, u.stage)
	b = appendUVarInt(b, map[bool]uint64{false: 0, true: 1}[u.compression])
	b = appendString(b, u.body)
	if proto.FeatureParameters.In(rev) {
		for _, p := range u.params {
			b = appendString(b, p.name)
			b = appendUVarInt(b, p.flags&0x07)
			b = appendString(b, p.value)
		}
		b = appendString(b, "")
	}
	return b, nil
}

// encodeLegacy writes binary settings: those sent as text first, then
// the numeric ones. A server that fails to parse a text value has read
// it whole, and reads on from the next setting's name: a numeric one
// after the text ones keeps that reading on names clickgate wrote.
func (u *upstreamQuery) encodeLegacy(b []byte) ([]byte, error) {
	all := append(append([]setting(nil), u.client...), u.fixed...)
	var text, numeric []setting
	for _, s := range all {
		kind, ok := legacySettings[s.name]
		if !ok {
			return nil, &refusal{code: codeUnknownSetting, name: "UNKNOWN_SETTING",
				msg: fmt.Sprintf("clickgate: the setting %q (from clickgate's configuration) is unknown to clickgate for this ClickHouse version, whose protocol sends settings in binary by type; remove it from clickhouse.settings for native clients", clip(s.name))}
		}
		if kind == kindFloat || kind == kindText {
			text = append(text, s)
		} else {
			numeric = append(numeric, s)
		}
	}
	if len(text) > 0 && len(numeric) == 0 {
		return nil, &refusal{code: codeBadArguments, name: "BAD_ARGUMENTS",
			msg: "clickgate: on this ClickHouse version, text-valued settings (such as " + text[0].name + ") are relayed only together with a numeric one; add one, for example max_threads"}
	}
	for _, s := range append(text, numeric...) {
		kind := legacySettings[s.name]
		b = appendString(b, s.name)
		var ok bool
		if b, ok = legacyValue(b, kind, s.value); !ok {
			return nil, &refusal{code: codeBadArguments, name: "BAD_ARGUMENTS",
				msg: fmt.Sprintf("clickgate: the setting %s takes a number, not %q", s.name, clip(s.value))}
		}
	}
	return b, nil
}

func (u *upstreamQuery) encodeInfo(b []byte, rev int) []byte {
	b = append(b, queryKindInitial)
	b = appendString(b, "")          // initial user: the server's own
	b = appendString(b, "")          // initial query id: the server's own
	b = appendString(b, "0.0.0.0:0") // initial address: the server's own
	if proto.FeatureQueryStartTime.In(rev) {
		var t [8]byte
		us := uint64(time.Now().UnixMicro())
		for i := range t {
			t[i] = byte(us >> (8 * i))
		}
		b = append(b, t[:]...)
	}
	b = append(b, interfaceTCP)
	b = appendString(b, u.info.osUser)
	b = appendString(b, u.info.hostname)
	b = appendString(b, u.info.name)
	b = appendUVarInt(b, u.info.major)
	b = appendUVarInt(b, u.info.minor)
	b = appendUVarInt(b, u.info.revision)
	if proto.FeatureQuotaKeyInClientInfo.In(rev) {
		b = appendString(b, u.quotaKey)
	}
	if proto.FeatureDistributedDepth.In(rev) {
		b = appendUVarInt(b, 0)
	}
	if proto.FeatureVersionPatch.In(rev) {
		b = appendUVarInt(b, u.info.patch)
	}
	if proto.FeatureOpenTelemetry.In(rev) {
		if u.info.trace == nil {
			b = append(b, 0)
		} else {
			b = append(append(b, 1), u.info.trace...)
		}
	}
	if proto.FeatureParallelReplicas.In(rev) {
		b = append(b, 0, 0, 0)
	}
	return b
}
