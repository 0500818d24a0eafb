package parser

import (
	"bytes"
	"time"
)

// ParseTime parses an audit event's timestamp, such as ev.StageTimestamp or
// ev.RequestReceivedTimestamp: an RFC 3339 date-time,
// YYYY-MM-DDTHH:MM:SS, then optionally "." and a fraction of a second,
// then "Z" or ±hh:mm. kube-apiserver writes 2026-11-23T10:54:44.671393Z
// (metav1.MicroTime); audit.k8s.io/v1beta1's timestamp field has no
// fraction (2017-09-11T19:55:05Z). b is the body of a JSON string as Scan
// returns it: JSON escapes in b are decoded, so b needs no Unquote.
//
// For every input of that shape ParseTime accepts exactly what
// time.Parse(time.RFC3339Nano, s) accepts and returns the same instant
// (FuzzParseTime checks both). As time.Parse does, it takes a fraction of
// any length and ignores the digits after the ninth (truncating, not
// rounding), and it takes a zone offset of up to +24:60, which RFC 3339
// itself would refuse. The deliberate differences from time.Parse:
//   - the time is returned in UTC: time.Parse keeps a ±hh:mm offset as a
//     time.FixedZone, which allocates;
//   - time.Parse also accepts two forms that are not RFC 3339, a comma
//     before the fraction (2026-11-23T10:54:44,5Z) and a one-digit hour
//     (2026-11-23T1:54:44Z); ParseTime refuses them.
//
// It does not allocate, even on failure. The error wraps ErrTimestamp and
// says which part is wrong; it does not quote b, so callers that log it
// should log b beside it.
func ParseTime(b []byte) (time.Time, error) {
	t, err := parseTime(b)
	if err != nil && bytes.IndexByte(b, '\\') >= 0 {
		return parseEscapedTime(b)
	}
	return t, err
}

// The errors of ParseTime.
var (
	errTimeSyntax = &fixedError{"parser: invalid timestamp: want YYYY-MM-DDTHH:MM:SS[.fraction] then Z or ±hh:mm", ErrTimestamp}
	errTimeMonth  = &fixedError{"parser: invalid timestamp: month out of range", ErrTimestamp}
	errTimeDay    = &fixedError{"parser: invalid timestamp: day out of range", ErrTimestamp}
	errTimeHour   = &fixedError{"parser: invalid timestamp: hour out of range", ErrTimestamp}
	errTimeMinute = &fixedError{"parser: invalid timestamp: minute out of range", ErrTimestamp}
	errTimeSecond = &fixedError{"parser: invalid timestamp: second out of range", ErrTimestamp}
	errTimeOffset = &fixedError{"parser: invalid timestamp: time zone offset out of range", ErrTimestamp}
	errTimeEscape = &fixedError{"parser: invalid timestamp: invalid JSON escape", ErrTimestamp}
)

// parseTime parses b, which has no escapes.
func parseTime(b []byte) (time.Time, error) {
	if len(b) < len("2006-01-02T15:04:05Z") || b[4] != '-' || b[7] != '-' || b[10] != 'T' || b[13] != ':' || b[16] != ':' {
		return time.Time{}, errTimeSyntax
	}
	y1, y2 := twoDigits(b[0:2]), twoDigits(b[2:4])
	month, day := twoDigits(b[5:7]), twoDigits(b[8:10])
	hour, minute, sec := twoDigits(b[11:13]), twoDigits(b[14:16]), twoDigits(b[17:19])
	if y1|y2|month|day|hour|minute|sec < 0 {
		return time.Time{}, errTimeSyntax
	}
	year := y1*100 + y2
	switch {
	case month < 1 || month > 12:
		return time.Time{}, errTimeMonth
	case day < 1 || day > daysIn(year, month):
		return time.Time{}, errTimeDay
	case hour > 23:
		return time.Time{}, errTimeHour
	case minute > 59:
		return time.Time{}, errTimeMinute
	case sec > 59:
		return time.Time{}, errTimeSecond
	}
	i := 19
	nsec := 0
	if b[i] == '.' {
		i++
		start := i
		for ; i < len(b) && b[i]-'0' <= 9; i++ {
			if i-start < 9 {
				nsec = nsec*10 + int(b[i]-'0')
			}
		}
		n := i - start
		if n == 0 {
			return time.Time{}, errTimeSyntax
		}
		for ; n < 9; n++ {
			nsec *= 10
		}
	}
	offset := 0
	switch z := b[i:]; {
	case len(z) == 1 && z[0] == 'Z':
	case len(z) == 6 && (z[0] == '+' || z[0] == '-') && z[3] == ':':
		oh, om := twoDigits(z[1:3]), twoDigits(z[4:6])
		if oh|om < 0 {
			return time.Time{}, errTimeSyntax
		}
		// time.Parse allows 24 and 60 ("some people do write offsets of
		// 24 hours or 60 minutes"), so we do too.
		if oh > 24 || om > 60 {
			return time.Time{}, errTimeOffset
		}
		offset = (oh*60 + om) * 60
		if z[0] == '-' {
			offset = -offset
		}
	default:
		return time.Time{}, errTimeSyntax
	}
	unix := daysSinceEpoch(year, month, day)*86400 + int64(hour*3600+minute*60+sec-offset)
	return time.Unix(unix, int64(nsec)).UTC(), nil
}

// daysSinceEpoch returns the number of days from 1970-01-01 to the given
// date of the proleptic Gregorian calendar (year >= 0), by Howard Hinnant's
// days_from_civil: years start on March 1st, so that the leap day is the
// last day of its year.
func daysSinceEpoch(year, month, day int) int64 {
	if month <= 2 {
		year--
	}
	era := (year+400)/400 - 1              // year/400 rounded down, for year >= -1
	yoe := year - era*400                  // [0, 399]
	mp := (month + 9) % 12                 // March = 0
	doy := (153*mp+2)/5 + day - 1          // [0, 365]
	doe := yoe*365 + yoe/4 - yoe/100 + doy // [0, 146096]
	return int64(era)*146097 + int64(doe) - 719468
}

// twoDigits returns the value of the two decimal digits in b, or -1.
func twoDigits(b []byte) int {
	d1, d2 := b[0]-'0', b[1]-'0'
	if d1 > 9 || d2 > 9 {
		return -1
	}
	return int(d1)*10 + int(d2)
}

func daysIn(year, month int) int {
	switch month {
	case 2:
		if year%4 == 0 && (year%100 != 0 || year%400 == 0) {
			return 29
		}
		return 28
	case 4, 6, 9, 11:
		return 30
	}
	return 31
}

// maxTimeLen is the longest input parseTime needs to see once the
// fraction's digits after the ninth, which do not change the time, are
// left out.
const maxTimeLen = len("2006-01-02T15:04:05.999999999-07:00")

// parseEscapedTime decodes the JSON escapes of b into a buffer on the stack
// and parses the result. Every character of a valid timestamp is ASCII, so
// an escape that decodes to anything else is kept as a byte no timestamp
// contains. Fraction digits after the ninth are dropped on the way, so that
// a timestamp of any length fits.
func parseEscapedTime(b []byte) (time.Time, error) {
	var buf [maxTimeLen]byte
	n := 0
	for i := 0; i < len(b); {
		c := b[i]
		if c != '\\' {
			i++
		} else {
			if i+1 >= len(b) {
				return time.Time{}, errTimeEscape
			}
			switch b[i+1] {
			case 'u':
				r := getu4(b[i:])
				if r < 0 {
					return time.Time{}, errTimeEscape
				}
				c = byte(r)
				if r >= 0x80 {
					c = 0xff
				}
				i += 6
			case '"', '\\', '/':
				c = b[i+1]
				i += 2
			case 'b', 'f', 'n', 'r', 't':
				c = 0 // a control character
				i += 2
			default:
				return time.Time{}, errTimeEscape
			}
		}
		if n == maxTimeLen-6 && c-'0' <= 9 && buf[19] == '.' && allDigits(buf[20:n]) {
			continue // the tenth digit of the fraction or later
		}
		if n == len(buf) {
			return time.Time{}, errTimeSyntax
		}
		buf[n] = c
		n++
	}
	return parseTime(buf[:n])
}

func allDigits(b []byte) bool {
	for _, c := range b {
		if c-'0' > 9 {
			return false
		}
	}
	return true
}
