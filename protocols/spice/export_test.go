package spice

// What the external tests (package spice_test, which use the scripted
// viewer of spicetest: spicetest imports this package, so the package's
// own tests cannot) need from inside the package.

var (
	ProxyPubKey   = proxyPubKey
	TestKey       = testKey
	OKReply       = okReply
	TestContext   = testContext
	QEMUReplyCaps = qemuReplyCaps
)

const (
	TestTimeout   = testTimeout
	LinkResultLen = linkResultLen
	AuthMechLen   = authMechLen
)
