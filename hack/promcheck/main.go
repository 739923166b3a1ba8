// Command promcheck checks the expressions of a PrometheusRule manifest: each
// must parse as PromQL and select only metrics in a list of known names, so an
// alert cannot silently watch a metric that was renamed or never existed (a
// selector of an unknown name is valid PromQL and simply never fires).
//
//	promcheck -metrics names.txt config/prometheus/alerts.yaml
//
// names.txt holds one metric name a line. Problems go to stdout, one a line;
// the exit status is 1 when there are any.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
	"sigs.k8s.io/yaml"
)

type ruleFile struct {
	Kind string `json:"kind"`
	Spec struct {
		Groups []struct {
			Name  string `json:"name"`
			Rules []struct {
				Alert  string `json:"alert"`
				Record string `json:"record"`
				Expr   string `json:"expr"`
			} `json:"rules"`
		} `json:"groups"`
	} `json:"spec"`
}

func main() {
	metricsFile := flag.String("metrics", "", "file of known metric names, one a line")
	flag.Parse()
	if *metricsFile == "" || flag.NArg() == 0 {
		fmt.Fprintln(os.Stderr, "usage: promcheck -metrics FILE RULES.yaml...")
		os.Exit(2)
	}
	known, err := readNames(*metricsFile)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	var problems []string
	for _, path := range flag.Args() {
		p, err := checkFile(path, known)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		problems = append(problems, p...)
	}
	for _, p := range problems {
		fmt.Println(p)
	}
	if len(problems) > 0 {
		os.Exit(1)
	}
}

func readNames(path string) (map[string]bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return parseNames(f)
}

func parseNames(r io.Reader) (map[string]bool, error) {
	known := map[string]bool{}
	s := bufio.NewScanner(r)
	for s.Scan() {
		if n := strings.TrimSpace(s.Text()); n != "" {
			known[n] = true
		}
	}
	return known, s.Err()
}

func checkFile(path string, known map[string]bool) ([]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var rf ruleFile
	// Not strict: labels and annotations are the caller's test's concern.
	if err := yaml.Unmarshal(b, &rf); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if rf.Kind != "PrometheusRule" {
		return nil, fmt.Errorf("%s: kind %q, want PrometheusRule", path, rf.Kind)
	}
	var problems []string
	rules := 0
	for _, g := range rf.Spec.Groups {
		for _, r := range g.Rules {
			rules++
			name := r.Alert + r.Record
			for _, p := range checkExpr(r.Expr, known) {
				problems = append(problems, fmt.Sprintf("%s: %s/%s: %s", path, g.Name, name, p))
			}
		}
	}
	if rules == 0 {
		problems = append(problems, path+": no rules")
	}
	return problems, nil
}

// checkExpr parses expr and reports a parse error, or each selected metric
// name that is not known, and each selector that names no metric at all
// (which would match every series and cannot be checked).
func checkExpr(expr string, known map[string]bool) []string {
	if strings.TrimSpace(expr) == "" {
		return []string{"empty expression"}
	}
	e, err := parser.NewParser(parser.Options{}).ParseExpr(expr)
	if err != nil {
		return []string{fmt.Sprintf("does not parse: %v", err)}
	}
	unknown := map[string]bool{}
	var problems []string
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		vs, ok := n.(*parser.VectorSelector)
		if !ok {
			return nil
		}
		name := vs.Name
		if name == "" {
			for _, m := range vs.LabelMatchers {
				if m.Name == labels.MetricName && m.Type == labels.MatchEqual {
					name = m.Value
				}
			}
		}
		switch {
		case name == "":
			problems = append(problems, fmt.Sprintf("selector %s names no metric exactly", vs))
		case !known[name]:
			unknown[name] = true
		}
		return nil
	})
	names := make([]string, 0, len(unknown))
	for n := range unknown {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		problems = append(problems, "unknown metric "+n)
	}
	return problems
}
