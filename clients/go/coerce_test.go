package sessionmemory

import (
	"encoding/json"
	"errors"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// The outputs of JavaScript's String(n) (node -p), which every client's
// GetString must write.
func TestFormatNumberWritesWhatJavaScriptWrites(t *testing.T) {
	for n, want := range map[float64]string{
		0: "0", math.Copysign(0, -1): "0", 7: "7", -0.5: "-0.5", 2.5: "2.5", 0.1: "0.1",
		0.30000000000000004: "0.30000000000000004", 123.456: "123.456", 1e-6: "0.000001", 1e-7: "1e-7",
		1.5e-10: "1.5e-10", 123e-20: "1.23e-18", 100000000000000: "100000000000000",
		123456789012345: "123456789012345", 1e20: "100000000000000000000",
		123456789012345680000: "123456789012345680000", 1e21: "1e+21", 1.5e21: "1.5e+21",
		-1e21: "-1e+21", 1e300: "1e+300", 5e-324: "5e-324", math.MaxFloat64: "1.7976931348623157e+308",
		0.000001234: "0.000001234", 1.234e-7: "1.234e-7", 1 << 53: "9007199254740992",
		math.Inf(1): "Infinity", math.Inf(-1): "-Infinity",
	} {
		if got := formatNumber(n); got != want {
			t.Errorf("formatNumber(%v) = %q, want %q", n, got, want)
		}
	}
	if got := formatNumber(math.NaN()); got != "NaN" {
		t.Errorf("formatNumber(NaN) = %q", got)
	}
}

// Whatever the number, what GetString writes reads back as that number
// (the shortest digits that do).
func TestFormatNumberRoundTrips(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for range 100_000 {
		n := math.Float64frombits(r.Uint64())
		if math.IsNaN(n) || math.IsInf(n, 0) {
			continue
		}
		text := formatNumber(n)
		back, err := strconv.ParseFloat(text, 64)
		if err != nil || (back != n && !(n == 0 && back == 0)) {
			t.Fatalf("formatNumber(%v) = %q reads back as %v, %v", n, text, back, err)
		}
		if !numeral.MatchString(text) { // so GetNumber reads GetString's text back
			t.Fatalf("formatNumber(%v) = %q is not a numeral", n, text)
		}
	}
}

func TestAsNumberTakesDecimalNumeralsOnly(t *testing.T) {
	for text, want := range map[string]float64{
		"42": 42, "-2.5": -2.5, "+3": 3, "1e3": 1000, "2.5E-1": 0.25, ".5": 0.5, "5.": 5,
		"00012": 12, "1e300": 1e300, "-0": 0, "1E+2": 100, "9007199254740993": 9007199254740992,
	} {
		if got, ok := asNumber(text); !ok || got != want {
			t.Errorf("asNumber(%q) = %v, %v; want %v", text, got, ok, want)
		}
	}
	for _, text := range []string{
		"1_000", " 12", "12 ", "0x10", "0X1p4", "0b1", "0o7", "Infinity", "-Infinity", "inf", "+Inf",
		"NaN", "nan", "١٢", "", "-", "+", ".", "1e", "e5", "1e400", "-1e400", "1,5", "12abc",
		"1.2.3", "--1", "1e+", "\t1", "1\n",
	} {
		if got, ok := asNumber(text); ok {
			t.Errorf("asNumber(%q) = %v, want no number", text, got)
		}
	}
}

func TestJSONScalarsConvertAsScalars(t *testing.T) {
	raw := func(s string) json.RawMessage { return json.RawMessage(s) }
	if n, ok := asNumber(raw(`5`)); !ok || n != 5 {
		t.Errorf("JSON 5: %v, %v", n, ok)
	}
	if n, ok := asNumber(raw(`"7"`)); !ok || n != 7 {
		t.Errorf(`JSON "7": %v, %v`, n, ok)
	}
	if s, ok := asString(raw(`1e-7`)); !ok || s != "1e-7" {
		t.Errorf("JSON 1e-7 as a string: %q, %v", s, ok)
	}
	if b, ok := asBool(raw(`"false"`)); !ok || b {
		t.Errorf(`JSON "false": %v, %v`, b, ok)
	}
	for _, text := range []string{`{"a":1}`, `[1]`, `null`} {
		if _, ok := asNumber(raw(text)); ok {
			t.Errorf("%s read as a number", text)
		}
		if _, ok := asString(raw(text)); ok {
			t.Errorf("%s read as a string", text)
		}
		if _, ok := asBool(raw(text)); ok {
			t.Errorf("%s read as a boolean", text)
		}
	}
	if _, ok := asString(FileInfo{Key: "receipt"}); ok {
		t.Error("a file read as a string")
	}
}

func TestTypeErrorSaysWhatTheKeyHolds(t *testing.T) {
	var err error = &TypeError{Key: "cart", Kind: "json", Want: "number", Value: json.RawMessage(`{"items":[]}`)}
	var te *TypeError
	if !errors.As(err, &te) || te.Want != "number" {
		t.Fatalf("errors.As: %v", err)
	}
	for e, want := range map[*TypeError]string{
		te: `sessionmemory: key "cart" holds a JSON object, which cannot be read as a number`,
		{Key: "n", Kind: "number", Want: "boolean", Value: 1.0}:     `sessionmemory: key "n" holds the number 1, which cannot be read as a boolean`,
		{Key: "f", Kind: "file", Want: "string", Value: FileInfo{}}: `sessionmemory: key "f" holds a file, which cannot be read as a string`,
		{Key: "s", Kind: "string", Want: "boolean", Value: "yes"}:   `sessionmemory: key "s" holds the string "yes", which cannot be read as a boolean`,
	} {
		if got := e.Error(); got != want {
			t.Errorf("got  %s\nwant %s", got, want)
		}
	}
}

// "-0" and "-0.0" read as 0, not -0 (fmt prints -0 as "-0"), as Python's int
// and TypeScript read them; the map above cannot tell, since -0 == 0.
func TestAsNumberReadsMinusZeroAsZero(t *testing.T) {
	for _, value := range []any{"-0", "-0.0", "-.0e5", math.Copysign(0, -1), json.RawMessage(`"-0"`)} {
		if n, ok := asNumber(value); !ok || n != 0 || math.Signbit(n) {
			t.Errorf("asNumber(%#v) = %v, %v; want 0", value, n, ok)
		}
	}
}

// A long string is named by its length in characters, never cut inside a
// character (the message once showed half a UTF-8 sequence as \xe2\x82).
func TestTypeErrorNamesALongStringByItsLength(t *testing.T) {
	for value, want := range map[string]string{
		strings.Repeat("€", 41): `holds a 41-character string,`,
		strings.Repeat("€", 40): `holds the string "` + strings.Repeat("€", 40) + `",`,
	} {
		got := (&TypeError{Key: "k", Kind: "string", Want: "number", Value: value}).Error()
		if !strings.Contains(got, want) || !utf8.ValidString(got) {
			t.Errorf("got %s\nwant it to contain %s", got, want)
		}
	}
}

func TestScalarValueTakesEveryGoScalarType(t *testing.T) {
	type named string
	for _, value := range []any{int8(1), int16(1), int32(1), int64(1), 1, uint(1), uint8(1), uint16(1),
		uint32(1), uint64(1), float32(1), 1.0, json.Number("1"), time.Duration(1)} {
		if v, ok := scalarValue(value); !ok || v.GetNumberValue() != 1 {
			t.Errorf("scalarValue(%T) = %v, %v; want the number 1", value, v, ok)
		}
	}
	if v, ok := scalarValue(named("x")); !ok || v.GetStringValue() != "x" {
		t.Errorf("a named string: %v, %v", v, ok)
	}
	for _, value := range []any{nil, []string{"a"}, map[string]int{}, struct{}{}, json.Number("1x"), new(int)} {
		if v, ok := scalarValue(value); ok {
			t.Errorf("scalarValue(%#v) = %v; want no scalar", value, v)
		}
	}
}
