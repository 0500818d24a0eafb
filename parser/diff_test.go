package parser

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strconv"
)

// The differential oracle: encoding/json decoding into map[string]any (with
// UseNumber), which like Scan matches keys case-sensitively and lets the last
// duplicate key win.

// jsonObject reports whether encoding/json accepts line as one JSON object
// and returns it decoded.
func jsonObject(line []byte) (map[string]any, bool) {
	if !json.Valid(line) {
		return nil, false
	}
	t := bytes.TrimLeft(line, " \t\r\n")
	if len(t) == 0 || t[0] != '{' {
		return nil, false
	}
	d := json.NewDecoder(bytes.NewReader(line))
	d.UseNumber()
	var m map[string]any
	if err := d.Decode(&m); err != nil {
		panic(fmt.Sprintf("json.Valid accepted but Decode failed: %v", err))
	}
	return m, true
}

func decodeRaw(raw []byte) (any, error) {
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	var v any
	err := d.Decode(&v)
	return v, err
}

// diffScan runs Scan on line and returns a description of every disagreement
// with encoding/json, or nil.
func diffScan(line []byte) []string {
	var ev Event
	err := Scan(line, &ev)
	m, ok := jsonObject(line)
	if !ok {
		if err == nil {
			return []string{"Scan accepted input that encoding/json rejects (or that is not an object)"}
		}
		var se *SyntaxError
		if !errors.As(err, &se) {
			return []string{fmt.Sprintf("error %v is not a *SyntaxError", err)}
		}
		if se.Offset < 0 || se.Offset > len(line) {
			return []string{fmt.Sprintf("error offset %d out of range", se.Offset)}
		}
		return nil
	}
	if err != nil {
		return []string{fmt.Sprintf("Scan rejected valid JSON object: %v", err)}
	}
	var bad []string
	str := func(name string, got []byte, obj map[string]any, key string) {
		want, isStr := obj[key].(string)
		if !isStr {
			if got != nil {
				bad = append(bad, fmt.Sprintf("%s: got %q, want nil (value %#v)", name, got, obj[key]))
			}
			return
		}
		if got == nil {
			bad = append(bad, fmt.Sprintf("%s: got nil, want %q", name, want))
			return
		}
		u, err := Unquote(nil, got)
		if err != nil || string(u) != want {
			bad = append(bad, fmt.Sprintf("%s: Unquote(%q) = %q, %v; want %q", name, got, u, err, want))
		}
	}
	raw := func(name string, got []byte, obj map[string]any, key string, wantArray bool) {
		want := obj[key]
		typeOK := false
		switch want.(type) {
		case []any:
			typeOK = wantArray
		case map[string]any:
			typeOK = !wantArray
		}
		if !typeOK {
			if got != nil {
				bad = append(bad, fmt.Sprintf("%s: got %q, want nil", name, got))
			}
			return
		}
		v, err := decodeRaw(got)
		if err != nil || !reflect.DeepEqual(v, want) {
			bad = append(bad, fmt.Sprintf("%s: got %q (%v), want %#v", name, got, err, want))
		}
	}
	span := func(name string, sp Span, key string) {
		want, present := m[key]
		if !present {
			if sp != (Span{}) {
				bad = append(bad, fmt.Sprintf("%s: got %+v, want absent", name, sp))
			}
			return
		}
		if !sp.Present() || sp.Key >= sp.Start || sp.Start >= sp.End || line[sp.Key] != '"' {
			bad = append(bad, fmt.Sprintf("%s: bad span %+v", name, sp))
			return
		}
		k, _, code := scanString(line, sp.Key+1)
		if code != cOK {
			bad = append(bad, fmt.Sprintf("%s: span key does not start a string", name))
			return
		}
		if u, _ := Unquote(nil, line[sp.Key+1:k-1]); string(u) != key {
			bad = append(bad, fmt.Sprintf("%s: span key is %q", name, u))
		}
		v, err := decodeRaw(sp.Value(line))
		if err != nil || !reflect.DeepEqual(v, want) {
			bad = append(bad, fmt.Sprintf("%s: value %q (%v) differs", name, sp.Value(line), err))
		}
	}
	sub := func(key string) map[string]any {
		o, _ := m[key].(map[string]any)
		if o == nil {
			return map[string]any{}
		}
		return o
	}
	str("Kind", ev.Kind, m, "kind")
	str("APIVersion", ev.APIVersion, m, "apiVersion")
	str("Level", ev.Level, m, "level")
	str("AuditID", ev.AuditID, m, "auditID")
	str("Stage", ev.Stage, m, "stage")
	str("RequestURI", ev.RequestURI, m, "requestURI")
	str("Verb", ev.Verb, m, "verb")
	str("Username", ev.Username, sub("user"), "username")
	str("UserUID", ev.UserUID, sub("user"), "uid")
	raw("UserGroups", ev.UserGroups, sub("user"), "groups", true)
	str("ImpersonatedUsername", ev.ImpersonatedUsername, sub("impersonatedUser"), "username")
	raw("SourceIPs", ev.SourceIPs, m, "sourceIPs", true)
	str("UserAgent", ev.UserAgent, m, "userAgent")
	or := sub("objectRef")
	str("ObjectRef.Resource", ev.ObjectRef.Resource, or, "resource")
	str("ObjectRef.Namespace", ev.ObjectRef.Namespace, or, "namespace")
	str("ObjectRef.Name", ev.ObjectRef.Name, or, "name")
	str("ObjectRef.APIGroup", ev.ObjectRef.APIGroup, or, "apiGroup")
	str("ObjectRef.APIVersion", ev.ObjectRef.APIVersion, or, "apiVersion")
	str("ObjectRef.Subresource", ev.ObjectRef.Subresource, or, "subresource")
	wantCode := 0
	if n, ok := sub("responseStatus")["code"].(json.Number); ok {
		if c, err := strconv.ParseInt(string(n), 10, 32); err == nil {
			wantCode = int(c)
		}
	}
	if ev.ResponseCode != wantCode {
		bad = append(bad, fmt.Sprintf("ResponseCode: got %d, want %d", ev.ResponseCode, wantCode))
	}
	str("RequestReceivedTimestamp", ev.RequestReceivedTimestamp, m, "requestReceivedTimestamp")
	str("StageTimestamp", ev.StageTimestamp, m, "stageTimestamp")
	raw("Annotations", ev.Annotations, m, "annotations", false)
	span("RequestObject", ev.RequestObject, "requestObject")
	span("ResponseObject", ev.ResponseObject, "responseObject")
	return bad
}
