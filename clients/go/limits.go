package sessionmemory

import (
	"context"
	"time"

	pb "github.com/session-memory/session-memory/clients/go/gen/sessionmemory/v1"
)

// Limits are the limits the server enforces for every tenant, and the calling
// tenant's own rate limits, quotas and use of them.
type Limits struct {
	MaxStringLength   int           // characters of a string value
	MaxNumberDigits   int           // significant digits of a number
	MaxJSONBytes      int           // bytes of a JSON value (UTF-8)
	MaxJSONDepth      int           // nesting of a JSON value
	DefaultTTL        time.Duration // TTL of a string, number or boolean written without one
	MaxPrimitiveTTL   time.Duration // longest TTL of a string, number or boolean
	MaxJSONTTL        time.Duration // longest TTL of a JSON value (one is required)
	MaxFileTTL        time.Duration // longest TTL of a file (one is required)
	MaxFileBytes      int64         // bytes of a file
	AllowedMIMETypes  []string      // MIME types a file may have
	MaxSessionIDLen   int           // characters of a session id
	MaxKeyLen         int           // characters of a key
	KeyPattern        string        // the pattern every key matches
	MaxBatchKeys      int           // keys of one GetMany, SetMany, Delete or Touch
	MaxKeysPerSession int           // keys one session may hold
	Tenant            TenantLimits  // the calling tenant's rate limits and quotas
	Usage             TenantUsage   // the calling tenant's use of its quotas
}

// TenantLimits are a tenant's rate limits and quotas: the server's defaults or
// the operator's overrides. A rate or quota of 0 is unlimited.
type TenantLimits struct {
	ReadsPerSecond     float64 // read calls per second over all server processes
	ReadBurst          int64   // read calls that may come at once above the rate
	WritesPerSecond    float64 // write calls per second over all server processes
	WriteBurst         int64   // write calls that may come at once above the rate
	FileBytesPerSecond float64 // file bytes per second through SetFile and ReadFile
	FileBytesBurst     int64   // file bytes that may move at once above the rate
	MaxSessions        int64   // live sessions
	MaxStoredBytes     int64   // bytes of values and files stored
	MaxUploads         int64   // uploads in progress over all server processes
}

// TenantUsage is a tenant's use of its quotas, as the server last counted it.
type TenantUsage struct {
	Sessions    int64 // live sessions
	StoredBytes int64 // bytes of values and files stored
	Uploads     int64 // uploads in progress
}

// GetLimits returns the limits the server enforces and the calling tenant's
// rate limits, quotas and usage. It is a read call (retried when safe).
func (c *Client) GetLimits(ctx context.Context) (*Limits, error) {
	r, err := invoke(ctx, c, true, c.timeout, func(ctx context.Context) (*pb.GetLimitsResponse, error) {
		return c.stub.GetLimits(ctx, &pb.GetLimitsRequest{})
	})
	if err != nil {
		return nil, err
	}
	l, t, u := r.GetLimits(), r.GetTenantLimits(), r.GetTenantUsage()
	seconds := func(s int64) time.Duration { return time.Duration(s) * time.Second }
	return &Limits{
		MaxStringLength:   int(l.GetMaxStringLength()),
		MaxNumberDigits:   int(l.GetMaxNumberDigits()),
		MaxJSONBytes:      int(l.GetMaxJsonBytes()),
		MaxJSONDepth:      int(l.GetMaxJsonDepth()),
		DefaultTTL:        seconds(l.GetDefaultTtlSeconds()),
		MaxPrimitiveTTL:   seconds(l.GetMaxPrimitiveTtlSeconds()),
		MaxJSONTTL:        seconds(l.GetMaxJsonTtlSeconds()),
		MaxFileTTL:        seconds(l.GetMaxFileTtlSeconds()),
		MaxFileBytes:      l.GetMaxFileBytes(),
		AllowedMIMETypes:  append([]string(nil), l.GetAllowedMimeTypes()...),
		MaxSessionIDLen:   int(l.GetMaxSessionIdLength()),
		MaxKeyLen:         int(l.GetMaxKeyLength()),
		KeyPattern:        l.GetKeyPattern(),
		MaxBatchKeys:      int(l.GetMaxBatchKeys()),
		MaxKeysPerSession: int(l.GetMaxKeysPerSession()),
		Tenant: TenantLimits{
			ReadsPerSecond:     t.GetReadsPerSecond(),
			ReadBurst:          t.GetReadBurst(),
			WritesPerSecond:    t.GetWritesPerSecond(),
			WriteBurst:         t.GetWriteBurst(),
			FileBytesPerSecond: t.GetFileBytesPerSecond(),
			FileBytesBurst:     t.GetFileBytesBurst(),
			MaxSessions:        t.GetMaxSessions(),
			MaxStoredBytes:     t.GetMaxStoredBytes(),
			MaxUploads:         t.GetMaxUploads(),
		},
		Usage: TenantUsage{Sessions: u.GetSessions(), StoredBytes: u.GetStoredBytes(), Uploads: u.GetUploads()},
	}, nil
}
