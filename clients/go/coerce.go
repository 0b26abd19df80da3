package sessionmemory

import (
	"encoding/json"
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"
)

// TypeError is the error of GetString, GetNumber and GetBool when the stored
// value cannot be read as the type asked for: no call failed, and the value is
// still stored. Tell it from a failed call with errors.As:
//
//	var te *sessionmemory.TypeError
//	if errors.As(err, &te) { log.Printf("%s holds a %s", te.Key, te.Kind) }
//
// The conversions, the same in the Python and TypeScript clients: a number
// reads any number, and a string only when it is a decimal numeral
// ([+-]?(digits[.digits] | .digits)([eE][+-]?digits)?, no spaces, underscores,
// hex or words) whose value is finite; a string reads a string as is, a
// boolean as "true"/"false" and a number as JavaScript writes it (1e-7,
// 100000000000000, -0 as 0); a boolean reads a boolean or the strings
// "true"/"false". A JSON value (SetJSON) that is a string, number or boolean
// converts as that value does; a JSON object, array or null never converts.
type TypeError struct {
	Key   string // the key (or path) read
	Kind  string // the stored kind: "string", "number", "boolean", "json" or "file"
	Want  string // the type asked for: "string", "number" or "boolean"
	Value any    // the stored value (as Entry.Value holds it)
}

func (e *TypeError) Error() string {
	return fmt.Sprintf("sessionmemory: key %q holds %s, which cannot be read as a %s", e.Key, describe(e.Kind, e.Value), e.Want)
}

// describe names a stored value for an error message: `the string "1_000"`,
// `the number 7`, `a JSON object`, `a file`.
func describe(kind string, value any) string {
	switch v := value.(type) {
	case string:
		if n := utf8.RuneCountInString(v); n > 40 {
			return fmt.Sprintf("a %d-character string", n) // as the Python and TypeScript clients say
		}
		return fmt.Sprintf("the string %q", v)
	case float64:
		return "the number " + formatNumber(v)
	case bool:
		return "the boolean " + strconv.FormatBool(v)
	case json.RawMessage:
		switch text := strings.TrimSpace(string(v)); {
		case strings.HasPrefix(text, "{"):
			return "a JSON object"
		case strings.HasPrefix(text, "["):
			return "a JSON array"
		case text == "null":
			return "JSON null"
		}
		return "the JSON value " + string(v)
	case FileInfo:
		return "a file"
	}
	return "a " + kind + " value"
}

// numeral is the grammar of a string that reads as a number: ASCII digits only
// (Go's \d is ASCII), no spaces, underscores, hex prefixes or words.
var numeral = regexp.MustCompile(`^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?$`)

// scalar is the value as a string, float64 or bool: a JSON string, number or
// boolean decoded; anything else (a JSON object, array or null, a file) is
// returned as it is.
func scalar(value any) any {
	raw, ok := value.(json.RawMessage)
	if !ok {
		return value
	}
	var decoded any
	if json.Unmarshal(raw, &decoded) != nil {
		return value
	}
	switch decoded.(type) {
	case string, float64, bool:
		return decoded
	}
	return value
}

// asString converts a stored value for GetString.
func asString(value any) (string, bool) {
	switch v := scalar(value).(type) {
	case string:
		return v, true
	case float64:
		return formatNumber(v), true
	case bool:
		return strconv.FormatBool(v), true
	}
	return "", false
}

// asNumber converts a stored value for GetNumber. "-0" reads as 0, as it
// does in Python (an int) and TypeScript.
func asNumber(value any) (float64, bool) {
	var n float64
	switch v := scalar(value).(type) {
	case float64:
		n = v
	case string:
		if !numeral.MatchString(v) {
			return 0, false
		}
		var err error
		n, err = strconv.ParseFloat(v, 64) // "1e-400" is 0, as in Python and JavaScript
		if err != nil {                    // ±Inf with ErrRange past float64
			return 0, false
		}
	default:
		return 0, false
	}
	if math.IsInf(n, 0) || math.IsNaN(n) {
		return 0, false
	}
	if n == 0 {
		return 0, true // not -0
	}
	return n, true
}

// asBool converts a stored value for GetBool.
func asBool(value any) (bool, bool) {
	switch v := scalar(value).(type) {
	case bool:
		return v, true
	case string:
		if v == "true" || v == "false" {
			return v == "true", true
		}
	}
	return false, false
}

// formatNumber writes n as JavaScript's Number.prototype.toString does, which
// is how GetString reads a number in every client: the shortest digits that
// read back as n, in plain notation from 1e-6 up to below 1e21 (0.000001,
// 100000000000000, 2.5), else in exponent notation (1e-7, 1.5e+21); -0 is "0".
func formatNumber(n float64) string {
	switch {
	case math.IsNaN(n):
		return "NaN"
	case math.IsInf(n, 1):
		return "Infinity"
	case math.IsInf(n, -1):
		return "-Infinity"
	case n == 0: // -0 too
		return "0"
	case n < 0:
		return "-" + formatNumber(-n)
	}
	// 'e' with precision -1 gives the shortest round-trip digits: d.ddde±XX.
	mantissa, exp, _ := strings.Cut(strconv.FormatFloat(n, 'e', -1, 64), "e")
	digits := strings.Replace(mantissa, ".", "", 1)
	e, _ := strconv.Atoi(exp)
	k, point := len(digits), e+1 // the value is 0.digits × 10^point
	switch {
	case k <= point && point <= 21:
		return digits + strings.Repeat("0", point-k)
	case 0 < point && point <= 21:
		return digits[:point] + "." + digits[point:]
	case -6 < point && point <= 0:
		return "0." + strings.Repeat("0", -point) + digits
	}
	sign := "+"
	if e < 0 {
		sign, e = "-", -e
	}
	if k == 1 {
		return digits + "e" + sign + strconv.Itoa(e)
	}
	return digits[:1] + "." + digits[1:] + "e" + sign + strconv.Itoa(e)
}
