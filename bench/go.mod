module github.com/tokenmeter/tokenmeter/bench

go 1.26.0

require github.com/tokenmeter/tokenmeter/schemas v0.0.0

require github.com/goccy/go-json v0.10.5

replace github.com/tokenmeter/tokenmeter/schemas => ../schemas
