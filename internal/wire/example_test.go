package wire_test

import (
	"fmt"

	"github.com/herdcap/herdcap/internal/wire"
	"github.com/herdcap/herdcap/invalidate"
)

func ExampleNoticeField() {
	v, epoch := wire.NoticeField([]invalidate.Notice{
		{RolloutID: "catalog-v2", Scope: "tag:catalog", Epoch: 41},
		{RolloutID: "oops-1", Scope: "caf\xc3\xa9", Epoch: 42},
	}, 10)
	fmt.Println(v)
	fmt.Println(epoch)
	// Output:
	// "tag:catalog";epoch=41;id="catalog-v2", :Y2Fmw6k=:;epoch=42;id="oops-1"
	// 42
}

func ExampleParseNotices() {
	notices, err := wire.ParseNotices(nil, []string{`"tag:catalog";epoch=41;id="catalog-v2", "*";epoch=oops;id="r"`})
	fmt.Println(notices, err)
	// Output:
	// [{catalog-v2 tag:catalog 41}] notice lacks a valid epoch or id parameter
}
