package cluster

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
)

// A write refused for want of a leader says to retry once (it said
// "...(an election is running?); retry in a few seconds); retry in a few
// seconds (..."), and still says it when the cause does not.
func TestUnavailableSaysRetryOnce(t *testing.T) {
	for _, err := range []error{
		fmt.Errorf("deploy %q: %w", "x", &NotLeaderError{}),
		fmt.Errorf("deploy %q: %w", "x", ErrUnavailable),
	} {
		ae := toAPIError(err)
		if ae.Status != http.StatusServiceUnavailable || ae.Code != CodeUnavailable {
			t.Fatalf("%v: %d %s", err, ae.Status, ae.Code)
		}
		if n := strings.Count(ae.Message, "retry in a few seconds"); n != 1 {
			t.Errorf("the answer says to retry %d times: %s", n, ae.Message)
		}
	}
}
