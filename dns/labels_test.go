package dns

import "testing"

func TestLabels(t *testing.T) {
	cases := []struct {
		name string
		fn   LabelFunc
		in   string
		want string
	}{
		{"app in group", RFC1123, AppHostname("/ssk2/whereisbot"), "whereisbot-ssk2"},
		{"nested groups", RFC1123, AppHostname("/a/b/app"), "app-b-a"},
		{"upper and underscores", RFC1123, "My_App.Prod", "my-app-prod"},
		{"invalid dropped", RFC1123, "a!b@c#", "abc"},
		{"leading dashes", RFC1123, "--x", "x"},
		{"63 chars", RFC1123, "a123456789b123456789c123456789d123456789e123456789f123456789g123456789", "a123456789b123456789c123456789d123456789e123456789f123456789g12"},
		{"cut then trailing dash refilled", RFC1123, "abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyzabcdefghij---klm", "abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyzabcdefghijk"},
		{"rfc952 digits", RFC952, "4abc123", "abc123"},
		{"rfc952 24", RFC952, "abcdefghijklmnopqrstuvwxyz", "abcdefghijklmnopqrstuvwx"},
		{"empty", RFC1123, "", ""},
	}
	for _, c := range cases {
		if got := c.fn(c.in); got != c.want {
			t.Errorf("%s: label(%q) = %q, want %q", c.name, c.in, got, c.want)
		}
	}
	if got := DomainFrag("Marathon_User.Prod", RFC1123); got != "marathon-user.prod" {
		t.Errorf("DomainFrag = %q", got)
	}
	if got := AgentTail("20160107-001256-134875658-5050-27524-S3"); got != "s3" {
		t.Errorf("AgentTail = %q", got)
	}
	// zbase32 test vector from the specification (0xF0BFC7 → "6n9hq").
	if got := zbase32.EncodeToString([]byte{0xF0, 0xBF, 0xC7}); got != "6n9hq" {
		t.Errorf("zbase32 = %q, want 6n9hq", got)
	}
	if h := TaskHash("biserver.1"); len(h) != 5 {
		t.Errorf("TaskHash length %d", len(h))
	}
}
