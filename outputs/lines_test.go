package outputs

import (
	"errors"
	"reflect"
	"testing"
)

func TestSendResult(t *testing.T) {
	retry, perm := errors.New("retry"), errors.New("perm")
	const A, R, X, C = LineAccepted, LineRetry, LineRejected, LineCut
	for _, tc := range []struct {
		name      string
		st        []LineState
		wholePerm bool
		check     func(error) bool
	}{
		{"all accepted", []LineState{A, A | C, A}, false, func(err error) bool { return err == nil }},
		{"all to retry", []LineState{R, R}, false, func(err error) bool { return err == retry }},
		{"some to retry", []LineState{A, R, X | C, A}, false, func(err error) bool {
			var pe *PartialError
			return errors.As(err, &pe) && reflect.DeepEqual(pe.Lines, []int{1, 2}) && errors.Is(err, retry)
		}},
		{"retry and rejected, none accepted", []LineState{R, X}, false, func(err error) bool {
			var pe *PartialError
			return errors.As(err, &pe) && reflect.DeepEqual(pe.Lines, []int{0, 1})
		}},
		{"some rejected", []LineState{A, X, A}, true, func(err error) bool {
			var re *RejectedError
			return errors.As(err, &re) && reflect.DeepEqual(re.Lines, []int{1}) && !IsPermanent(err)
		}},
		{"all rejected by the whole request", []LineState{X, X}, true, func(err error) bool { return IsPermanent(err) && errors.Is(err, perm) }},
		{"all rejected line by line", []LineState{X, X}, false, func(err error) bool {
			var re *RejectedError
			return errors.As(err, &re) && len(re.Lines) == 2
		}},
	} {
		if err := SendResult(tc.st, retry, perm, tc.wholePerm); !tc.check(err) {
			t.Errorf("%s: SendResult = %v", tc.name, err)
		}
	}
}

func TestStatesAndMark(t *testing.T) {
	var buf []LineState
	st := States(&buf, 4)
	st[1] = LineCut
	st[2] = LineRejected
	if n := Mark(st, []int{0, 1}, LineAccepted); n != 1 {
		t.Errorf("Mark counted %d cut lines accepted, want 1", n)
	}
	if st[0] != LineAccepted || st[1] != LineAccepted || st[2] != LineRejected {
		t.Errorf("states %v", st)
	}
	if st = States(&buf, 3); !reflect.DeepEqual(st, []LineState{0, 0, 0}) {
		t.Errorf("States did not reset: %v", st)
	}
	for code, want := range map[int]bool{408: true, 429: true, 500: true, 503: true, 501: false, 400: false, 404: false, 200: false} {
		if RetryableStatus(code) != want {
			t.Errorf("RetryableStatus(%d) = %v", code, !want)
		}
	}
}
