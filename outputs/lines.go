package outputs

// LineState is what became of one line of a batch in a Send that makes
// several requests (the HTTP outputs: each request fares on its own).
type LineState uint8

// Line states. LineCut is a flag kept beside the state: the line was sent
// with its objects cut out to fit.
const (
	LinePending LineState = iota
	LineAccepted
	LineRetry
	LineRejected
	LineCut LineState = 1 << 7
)

// SendResult is what such a Send returns once every line has its state:
//
//   - nil when every line was accepted;
//   - when some lines are to be sent again: retryErr itself if no line
//     was accepted or rejected (the whole batch goes again), else a
//     PartialError with those lines and the rejected ones (rejected again
//     on the resend, then dead-lettered: one error value cannot carry
//     both);
//   - when the only failures are rejections: permErr made Permanent if
//     nothing was accepted and the rejection was a whole request's
//     answer (wholePerm), else a RejectedError with the rejected lines.
func SendResult(st []LineState, retryErr, permErr error, wholePerm bool) error {
	var accepted, retry, rejected int
	for _, s := range st {
		switch s &^ LineCut {
		case LineAccepted:
			accepted++
		case LineRetry:
			retry++
		case LineRejected:
			rejected++
		}
	}
	if retry == 0 && rejected == 0 {
		return nil
	}
	lines := func(retryToo bool) []int {
		var l []int
		for j, s := range st {
			if s &^= LineCut; s == LineRejected || retryToo && s == LineRetry {
				l = append(l, j)
			}
		}
		return l
	}
	if retry == 0 {
		if accepted == 0 && wholePerm {
			return Permanent(permErr)
		}
		return &RejectedError{Lines: lines(false), Err: permErr}
	}
	if accepted == 0 && rejected == 0 {
		return retryErr
	}
	return &PartialError{Lines: lines(true), Err: retryErr}
}

// States returns the states of n lines, all pending, in *buf's storage
// (grown when needed).
func States(buf *[]LineState, n int) []LineState {
	if cap(*buf) < n {
		*buf = make([]LineState, n)
	}
	st := (*buf)[:n]
	clear(st)
	return st
}

// Mark sets lines to s and returns how many of them were cut lines now
// accepted (the outputs' Truncated count).
func Mark(st []LineState, lines []int, s LineState) (cutAccepted int) {
	for _, j := range lines {
		if s == LineAccepted && st[j]&LineCut != 0 {
			cutAccepted++
		}
		st[j] = s
	}
	return cutAccepted
}
