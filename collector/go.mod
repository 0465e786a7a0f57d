module github.com/tokenmeter/tokenmeter/collector

go 1.26

require github.com/tokenmeter/tokenmeter/schemas v0.0.0

replace github.com/tokenmeter/tokenmeter/schemas => ../schemas
