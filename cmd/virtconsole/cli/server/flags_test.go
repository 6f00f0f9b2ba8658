package server

import "testing"

// TestShare: a token's and a client's share of --max-sessions is what
// the flag says, else half of it; no bound when there is none.
func TestShare(t *testing.T) {
	for _, tc := range []struct{ n, max, want int }{
		{0, 1000, 500}, {0, 1, 1}, {0, 0, 0}, {7, 1000, 7}, {7, 0, 7},
	} {
		if got := share(tc.n, tc.max); got != tc.want {
			t.Errorf("share(%d, %d) = %d, want %d", tc.n, tc.max, got, tc.want)
		}
	}
}
