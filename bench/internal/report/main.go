// Command report turns what scripts/bench.sh collected from every bench
// into the one table of `make bench`: bench/out/report.md and report.json.
//
// Its input (the file named by -in) has one line per collected line, the
// bench's name, a tab, then either `ROW {json}` (a benchkit.Row) or
// `SUMMARY ...` or `EXIT n`. A bench that printed no ROW lines gets one row
// from its SUMMARY line, marked as such, so nothing a bench said is lost;
// a bench that exited non-zero gets a failed row.
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/weftnet/weft/bench/internal/benchkit"
)

func main() {
	in := flag.String("in", "", "the collected lines")
	out := flag.String("out", "bench/out", "where report.md and report.json go")
	flag.Parse()
	rows, err := collect(*in)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench report:", err)
		os.Exit(1)
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, "bench report:", err)
		os.Exit(1)
	}
	js, _ := json.MarshalIndent(rows, "", "  ")
	if err := os.WriteFile(filepath.Join(*out, "report.json"), append(js, '\n'), 0o644); err != nil {
		fmt.Fprintln(os.Stderr, "bench report:", err)
		os.Exit(1)
	}
	md := markdown(rows)
	if err := os.WriteFile(filepath.Join(*out, "report.md"), []byte(md), 0o644); err != nil {
		fmt.Fprintln(os.Stderr, "bench report:", err)
		os.Exit(1)
	}
	fmt.Print(md)
	fmt.Printf("\nwritten: %s, %s\n", filepath.Join(*out, "report.md"), filepath.Join(*out, "report.json"))
}

func collect(path string) ([]benchkit.Row, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var rows []benchkit.Row
	hasRows := map[string]bool{}
	summaries := map[string]string{}
	exits := map[string]string{}
	var order []string
	seen := map[string]bool{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		name, line, ok := strings.Cut(sc.Text(), "\t")
		if !ok {
			continue
		}
		if !seen[name] {
			seen[name] = true
			order = append(order, name)
		}
		switch {
		case strings.HasPrefix(line, "ROW "):
			var r benchkit.Row
			if err := json.Unmarshal([]byte(strings.TrimPrefix(line, "ROW ")), &r); err != nil {
				return nil, fmt.Errorf("bench %s printed a ROW that is not JSON: %v", name, err)
			}
			if r.Bench == "" {
				r.Bench = name
			}
			rows = append(rows, r)
			hasRows[name] = true
		case strings.HasPrefix(line, "SUMMARY"):
			summaries[name] = strings.TrimSpace(strings.TrimPrefix(line, "SUMMARY"))
		case strings.HasPrefix(line, "EXIT "):
			exits[name] = strings.TrimPrefix(line, "EXIT ")
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	for _, name := range order {
		if code := exits[name]; code != "" && code != "0" {
			rows = append(rows, benchkit.Row{Bench: name, Figure: "bench run", Weft: "exit " + code + ": " + summaries[name], Peer: "-", Target: "exit 0", Met: false})
			continue
		}
		if !hasRows[name] {
			s := summaries[name]
			if s == "" {
				s = "no SUMMARY line"
			}
			rows = append(rows, benchkit.Row{Bench: name, Figure: "summary line only (no table rows yet)", Weft: s, Peer: "see the bench's output", Met: !strings.Contains(s, "FAIL") && !strings.Contains(s, "MISSES")})
		}
	}
	return rows, nil
}

func markdown(rows []benchkit.Row) string {
	var b strings.Builder
	b.WriteString("| bench | figure | weft | peer (side by side) | peer's figure | ratio | target | met |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|\n")
	for _, r := range rows {
		ratio := ""
		if r.Ratio != 0 {
			ratio = fmt.Sprintf("%.2f×", r.Ratio)
		}
		met := "no"
		switch {
		case r.Target == "":
			met = "— (no target)"
		case r.Met:
			met = "yes"
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s | %s |\n", cell(r.Bench), cell(r.Figure), cell(r.Weft), cell(r.Peer), cell(r.PeerValue), ratio, cell(r.Target), met)
	}
	return b.String()
}

func cell(s string) string { return strings.ReplaceAll(s, "|", "\\|") }
