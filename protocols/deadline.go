package protocols

import "time"

var (
	// aLongTimeAgo is a non-zero time in the past: setting it as a
	// deadline makes pending I/O fail at once (the net/http idiom).
	aLongTimeAgo = time.Unix(1, 0)
	noDeadline   time.Time
)
