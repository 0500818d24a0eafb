package main

import (
	"os"
	"strings"
	"testing"

	"github.com/audittail/audittail/agent"
	"github.com/audittail/audittail/outputs"
)

// section returns the text of docs/configuration.md from the heading that
// contains title to the next heading of the same or a higher level.
func section(doc, title string) string {
	lines := strings.Split(doc, "\n")
	for i, l := range lines {
		if !strings.HasPrefix(l, "#") || !strings.Contains(l, title) {
			continue
		}
		level := len(l) - len(strings.TrimLeft(l, "#"))
		var b strings.Builder
		for _, m := range lines[i+1:] {
			if strings.HasPrefix(m, "#") && len(m)-len(strings.TrimLeft(m, "#")) <= level {
				break
			}
			b.WriteString(m + "\n")
		}
		return b.String()
	}
	return ""
}

func TestConfigurationDocListsEveryKey(t *testing.T) {
	data, err := os.ReadFile("../../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(data)
	check := func(where, text string, keys []string) {
		if text == "" {
			t.Errorf("docs/configuration.md has no section for %s", where)
			return
		}
		for _, k := range keys {
			if !strings.Contains(text, "`"+k+"`") {
				t.Errorf("docs/configuration.md, %s: key `%s` is not documented", where, k)
			}
		}
	}
	check("the top level", section(doc, "## Top level"), outputs.Keys(agent.Config{}))
	check("inputs[]", section(doc, "## `inputs[]`"), outputs.Keys(agent.InputConfig{}))
	check("outputs[]", section(doc, "## `outputs[]`"), outputs.Keys(outputs.Config{}))
	for name, typ := range outputTypes {
		check("output type "+name, section(doc, "`"+name+"`"), outputs.Keys(typ.options))
		if !strings.Contains(section(doc, "## `outputs[]`"), "`"+name+"`") {
			t.Errorf("docs/configuration.md does not list output type %s", name)
		}
	}
}
