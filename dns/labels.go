package dns

import (
	"bytes"
	"crypto/sha1"
	"encoding/base32"
	"strings"
)

// LabelFunc turns an arbitrary name into one DNS label.
type LabelFunc func(string) string

// RFC1123 sanitises name into a single DNS label the way Mesos-DNS does by
// default (records/labels.RFC1123): A-Z are lower-cased, a-z and 0-9 kept,
// '-', '.' and '_' become '-', everything else is dropped; leading '-' is
// trimmed, the label is cut to 63 characters and trailing '-' trimmed.
func RFC1123(name string) string { return label(name, 63, "-", "-") }

// RFC952 is Mesos-DNS's enforceRFC952 mode: 24 characters at most, and
// leading digits are trimmed too.
func RFC952(name string) string { return label(name, 24, "-0123456789", "-") }

func label(name string, maxlen int, left, right string) string {
	mapped := bytes.Map(func(r rune) rune {
		switch {
		case r >= 'A' && r <= 'Z':
			return r + ('a' - 'A')
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			return r
		case r == '-' || r == '.' || r == '_':
			return '-'
		}
		return -1
	}, []byte(name))
	return string(trimCut(mapped, maxlen, left, right))
}

// trimCut is Mesos-DNS's cut: trim the left cutset, cut at maxlen, trim the
// right cutset, then refill from what followed the cut (skipping its leading
// right-cutset characters) up to the original size. weft trims the right
// cutset once more at the end so the label never ends in '-' (Mesos-DNS can
// produce such a label in a corner case).
func trimCut(l []byte, maxlen int, left, right string) []byte {
	trim := bytes.TrimLeft(l, left)
	size := min(len(trim), maxlen)
	head := bytes.TrimRight(trim[:size], right)
	if len(head) == size {
		return head
	}
	tail := bytes.TrimLeft(trim[size:], right)
	if len(tail) > 0 {
		head = append(head[:len(head):len(head)], tail[:min(len(tail), size-len(head))]...)
	}
	return bytes.TrimRight(head, right)
}

// DomainFrag sanitises a dotted name label by label, keeping the dots and
// dropping empty labels: "Marathon_User.Prod" → "marathon-user.prod". Mesos-DNS
// uses it for framework names.
func DomainFrag(name string, fn LabelFunc) string {
	var out []string
	for _, part := range strings.Split(name, ".") {
		if l := fn(part); l != "" {
			out = append(out, l)
		}
	}
	return strings.Join(out, ".")
}

// AppHostname is Marathon's PathId.toHostname: "/ssk2/whereisbot" →
// "whereisbot.ssk2".
func AppHostname(appID string) string {
	parts := strings.FieldsFunc(appID, func(r rune) bool { return r == '/' })
	for i, j := 0, len(parts)-1; i < j; i, j = i+1, j-1 {
		parts[i], parts[j] = parts[j], parts[i]
	}
	return strings.Join(parts, ".")
}

var zbase32 = base32.NewEncoding("ybndrfg8ejkmcpqxot1uwisza345h769").WithPadding(base32.NoPadding)

// TaskHash is the 5-character zbase32 of sha1(taskID) Mesos-DNS puts in a
// task's canonical name.
func TaskHash(taskID string) string {
	h := sha1.Sum([]byte(taskID))
	return zbase32.EncodeToString(h[:])[:5]
}

// AgentTail is the last '-'-separated field of an agent id, lower-cased
// ("...-S3" → "s3").
func AgentTail(agentID string) string {
	f := strings.Split(agentID, "-")
	return strings.ToLower(f[len(f)-1])
}
